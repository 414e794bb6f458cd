"""Progress of long transfers: a terminal bar, a Prefect progress artifact and plugin hooks.

``with Progress("upload s3://b/k", total=size, unit="bytes") as p: p.advance(n)``.
Thread-safe (multipart parts advance it from worker threads); the artifact and the hook are
throttled to one update per ``interval`` seconds so progress never costs throughput.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from types import TracebackType
from typing import Any

from flowport.plugins import hook


def in_prefect_run() -> bool:
    """True inside a Prefect flow or task run (artifacts and run loggers need one)."""
    from prefect.context import FlowRunContext, TaskRunContext

    return bool(TaskRunContext.get() or FlowRunContext.get())


def run_logger(name: str = "flowport") -> logging.Logger | logging.LoggerAdapter[logging.Logger]:
    """Prefect's run logger inside a flow or task run, the stdlib logger ``name`` elsewhere."""
    if in_prefect_run():
        from prefect.logging import get_run_logger

        return get_run_logger()
    return logging.getLogger(name)


def _amount(n: int, unit: str) -> str:
    if unit != "bytes":
        return f"{n:,} {unit}"
    size = float(n)
    for prefix in ("bytes", "KiB", "MiB", "GiB"):
        if size < 1024 or prefix == "GiB":
            return f"{n:,} bytes" if prefix == "bytes" else f"{size:.1f} {prefix}"
        size /= 1024
    raise AssertionError("unreachable")


class Progress:
    """Counts ``done`` of ``total`` units and reports it where someone can see it.

    On a clean exit it logs one INFO line saying what moved, e.g.
    ``upload s3://b/k: 12.0 MiB in 1.20 s``, as prefect-aws does.
    """

    #: Seconds between artifact / hook updates.
    interval: float = 1.0
    #: Below this many units, no artifact or bar is shown (small transfers stay quiet).
    min_total: int = 32 * 1024 * 1024

    def __init__(self, description: str, total: int | None, unit: str = "bytes"):
        self.description = description
        self.total = total
        self.unit = unit
        self.done = 0
        self._lock = threading.Lock()
        self._last = 0.0
        self._artifact: Any = None
        self._bar: Any = None
        self._started = time.perf_counter()

    def __enter__(self) -> Progress:
        self._started = time.perf_counter()
        big = self.total is None or self.total >= self.min_total
        if big and sys.stderr.isatty():
            from rich.progress import Progress as RichProgress

            self._bar = RichProgress(transient=True)
            self._bar.start()
            self._bar_task = self._bar.add_task(self.description, total=self.total)
        if big and self.total and in_prefect_run():
            from prefect.artifacts import create_progress_artifact

            self._artifact = create_progress_artifact(0.0, description=self.description)
        return self

    def advance(self, n: int) -> None:
        """Record ``n`` more units done."""
        with self._lock:
            self.done += n
            now = time.monotonic()
            due = now - self._last >= self.interval
            if due:
                self._last = now
        if self._bar is not None:
            self._bar.update(self._bar_task, completed=self.done)
        if due:
            self._report()

    def _report(self) -> None:
        hook().flowport_transfer_progress(
            task_name=self.description, unit=self.unit, done=self.done, total=self.total
        )
        if self._artifact is not None and self.total:
            from prefect.artifacts import update_progress_artifact

            update_progress_artifact(self._artifact, min(100.0, 100.0 * self.done / self.total))

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._bar is not None:
            self._bar.stop()
        if exc is None:
            self._report()
            seconds = time.perf_counter() - self._started
            run_logger().info(
                "%s: %s in %.2f s", self.description, _amount(self.done, self.unit), seconds
            )
