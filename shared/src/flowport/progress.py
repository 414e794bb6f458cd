"""Progress of long transfers: a terminal bar, a Prefect progress artifact and plugin hooks.

``with Progress("upload s3://b/k", total=size, unit="bytes") as p: p.advance(n)``.
Thread-safe (multipart parts advance it from worker threads); the artifact and the hooks are
throttled to one update per ``interval`` seconds so progress never costs throughput. A transfer
started inside a flowport task reports what it moved under that task and its connector
(:func:`current_task`), through the ``flowport_units_moved`` hook.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
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


@dataclass(frozen=True)
class TaskScope:
    """The flowport task a piece of work runs under: what hooks attribute it to."""

    task_name: str
    connector: str
    parent: TaskScope | None = None


_scope: ContextVar[TaskScope | None] = ContextVar("flowport_task_scope", default=None)


def current_task() -> TaskScope | None:
    """The flowport task running in this context; None outside one (or in a worker thread it
    started: context variables do not cross into thread pools)."""
    return _scope.get()


def connector_of(cls: type) -> str:
    """A task class's connector: its top-level package without ``flowport_`` (``flowport_s3``
    -> ``s3``); the core's own tasks are ``core``."""
    package = cls.__module__.partition(".")[0]
    return "core" if package == "flowport" else package.removeprefix("flowport_")


def enter_task(task_name: str, cls: type) -> None:
    """Mark the start of a run of ``task_name`` (a ``cls`` task) in this context."""
    _scope.set(TaskScope(task_name, connector_of(cls), _scope.get()))


def leave_task() -> None:
    """Undo the matching :func:`enter_task` (nested task bodies restore their caller's)."""
    scope = _scope.get()
    _scope.set(scope.parent if scope is not None else None)


@contextmanager
def in_task(task_name: str, cls: type) -> Iterator[None]:
    """:func:`enter_task` for a block only: generator tasks scope each hook call, never the
    caller's code between their yields."""
    enter_task(task_name, cls)
    try:
        yield
    finally:
        leave_task()


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
        self._moved = 0  # the part of ``done`` already reported through units_moved
        self._scope = current_task()  # captured here: advance() may run in worker threads
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
        self._report_moved()
        if self._artifact is not None and self.total:
            from prefect.artifacts import update_progress_artifact

            update_progress_artifact(self._artifact, min(100.0, 100.0 * self.done / self.total))

    def _report_moved(self) -> None:
        """Report what moved since the last report, once (two threads never both report it)."""
        with self._lock:
            amount, self._moved = self.done - self._moved, self.done
        if not amount:
            return
        scope = self._scope
        hook().flowport_units_moved(
            task_name=scope.task_name if scope else "",
            connector=scope.connector if scope else "",
            unit=self.unit,
            amount=amount,
        )

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
        else:
            self._report_moved()  # what moved before the failure did move
