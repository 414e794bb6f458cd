"""Per flow run tallies of what flowport tasks moved, published as one markdown artifact.

The artifact is created at the end of the first flowport task of a flow run and updated in
place at the end of each later one, so it always shows the whole run so far; its key
(``flowport-<flow>-metrics``) keeps one version per flow run, like flowport's other artifacts.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from flowport.secrets import redact
from flowport_metrics.metrics import UNITS

_log = logging.getLogger("flowport.metrics")


@dataclass
class TaskTally:
    """What the runs of one task (of one connector) did in one flow run."""

    runs: int = 0
    failed: int = 0
    retries: int = 0
    seconds: float = 0.0
    moved: dict[str, int] = field(default_factory=dict)


@dataclass
class FlowRunSummary:
    """One flow run's tallies by (connector, task), and the artifact that shows them."""

    flow_run_id: UUID
    key: str | None = None
    tasks: dict[tuple[str, str], TaskTally] = field(default_factory=dict)
    artifact_id: UUID | None = None
    publish_failed: bool = False
    #: Guards the tallies (held briefly, also by worker threads counting parts).
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    #: One writer at a time: never two artifacts for a run, never an older table last.
    write_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def tally(self, connector: str, task: str) -> TaskTally:
        return self.tasks.setdefault((connector, task), TaskTally())


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _size(n: int) -> str:
    size = float(n)
    for prefix in ("bytes", "KiB", "MiB", "GiB"):
        if size < 1024 or prefix == "GiB":
            return f"{n:,} bytes" if prefix == "bytes" else f"{size:.1f} {prefix}"
        size /= 1024
    raise AssertionError("unreachable")


def render(summary: FlowRunSummary) -> str:
    """The markdown table: one row per (connector, task), then the totals."""
    units = list(UNITS)
    units += sorted({u for t in summary.tasks.values() for u in t.moved} - set(units))
    head = ["connector", "task", "runs", "failed", "retries", *units, "seconds"]
    lines = [
        "### flowport: what moved in this flow run",
        "",
        "| " + " | ".join(head) + " |",
        "|:--|:--|" + "--:|" * (len(head) - 2),
    ]
    total = TaskTally()
    for (connector, task), t in sorted(summary.tasks.items()):
        cells = [_cell(connector), _cell(task), f"{t.runs:,}", f"{t.failed:,}", f"{t.retries:,}"]
        cells += [f"{t.moved.get(u, 0):,}" for u in units]
        lines.append("| " + " | ".join([*cells, f"{t.seconds:.2f}"]) + " |")
        total.runs += t.runs
        total.failed += t.failed
        total.retries += t.retries
        total.seconds += t.seconds
        for unit, n in t.moved.items():
            total.moved[unit] = total.moved.get(unit, 0) + n
    cells = ["", "**total**", f"{total.runs:,}", f"{total.failed:,}", f"{total.retries:,}"]
    cells += [f"{total.moved.get(u, 0):,}" for u in units]
    lines.append("| " + " | ".join([*cells, f"{total.seconds:.2f}"]) + " |")
    moved = ", ".join(
        _size(total.moved.get(u, 0)) if u == "bytes" else f"{total.moved.get(u, 0):,} {u}"
        for u in units
    )
    lines += [
        "",
        f"Moved {moved}; {total.retries:,} retries, {total.failed:,} failed task runs "
        "(seconds add up task durations, which may overlap).",
    ]
    return redact("\n".join(lines) + "\n")


class Summaries:
    """Tallies of the most recent ``limit`` flow runs seen by this process."""

    def __init__(self, *, publish: bool = True, limit: int = 1000) -> None:
        self.publish_artifacts = publish
        self.limit = limit
        self._lock = threading.Lock()
        self._runs: OrderedDict[UUID, FlowRunSummary] = OrderedDict()

    def run(self, flow_run_id: UUID, key: str | None = None) -> FlowRunSummary:
        """The summary of ``flow_run_id`` (created on first use; the oldest one is dropped)."""
        with self._lock:
            summary = self._runs.get(flow_run_id)
            if summary is None:
                summary = self._runs[flow_run_id] = FlowRunSummary(flow_run_id, key)
                while len(self._runs) > self.limit:
                    self._runs.popitem(last=False)
            return summary

    def get(self, flow_run_id: UUID) -> FlowRunSummary | None:
        with self._lock:
            return self._runs.get(flow_run_id)

    def publish(self, summary: FlowRunSummary) -> None:
        """Create or update the run's artifact; a failure is logged once, never raised."""
        if not self.publish_artifacts:
            return
        with summary.write_lock:
            with summary.lock:
                markdown = render(summary)
            try:
                self._write(summary, markdown)
            except Exception as exc:  # monitoring must never fail the transfer it watches
                if not summary.publish_failed:
                    summary.publish_failed = True
                    _log.warning(
                        "flowport-metrics: summary artifact of flow run %s not written (%s: %s)",
                        summary.flow_run_id,
                        type(exc).__name__,
                        redact(str(exc)),
                    )

    def _write(self, summary: FlowRunSummary, markdown: str) -> None:
        from prefect.client.orchestration import get_client
        from prefect.client.schemas.actions import ArtifactCreate, ArtifactUpdate

        client: Any
        with get_client(sync_client=True) as client:
            if summary.artifact_id is None:
                created = client.create_artifact(
                    ArtifactCreate(
                        key=summary.key,
                        type="markdown",
                        description="flowport: rows, bytes, messages, retries and failures "
                        "per task of this flow run",
                        data=markdown,
                        flow_run_id=summary.flow_run_id,
                    )
                )
                summary.artifact_id = created.id
            else:
                client.update_artifact(summary.artifact_id, ArtifactUpdate(data=markdown))
