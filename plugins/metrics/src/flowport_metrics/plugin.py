"""The behaviour plugin: flowport's hooks in, Prometheus metrics and flow run summaries out.

Installing the distribution registers :data:`plugin` through the ``flowport.plugins`` entry
point; nothing happens until the first flowport task of the process starts, which also starts
the ``/metrics`` endpoint (once per process).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from prefect.context import FlowRunContext, TaskRunContext
from prometheus_client import REGISTRY, CollectorRegistry
from pydantic import ValidationError

from flowport.artifacts import artifact_key
from flowport.hookspecs import hookimpl
from flowport.progress import current_task
from flowport.secrets import redact
from flowport_metrics.exporter import Exporter, exporter, mark_dead_at_exit
from flowport_metrics.metrics import Metrics
from flowport_metrics.settings import MetricsSettings
from flowport_metrics.summary import Summaries

#: The label of a task or connector flowport could not name (a Progress outside any task).
UNKNOWN = "unknown"

_log = logging.getLogger("flowport.metrics")


@dataclass(frozen=True)
class _Run:
    """A task run in progress in this process."""

    connector: str
    flow_run_id: UUID | None


def _flow_run_id() -> UUID | None:
    """The Prefect flow run this thread works for (None outside one, or in a worker thread)."""
    task_ctx = TaskRunContext.get()
    if task_ctx is not None and task_ctx.task_run.flow_run_id is not None:
        return task_ctx.task_run.flow_run_id
    flow_ctx = FlowRunContext.get()
    return flow_ctx.flow_run.id if flow_ctx is not None and flow_ctx.flow_run else None


class MetricsPlugin:
    """Counts what flowport tasks move, retry and fail, per connector and task.

    ``exporter`` None never serves (tests read ``registry`` directly); ``summaries`` None
    publishes no artifact.
    """

    def __init__(
        self,
        registry: CollectorRegistry = REGISTRY,
        *,
        exporter: Exporter | None = None,
        summaries: Summaries | None = None,
    ) -> None:
        self.metrics = Metrics(registry)
        self.exporter = exporter
        self.summaries = summaries
        self._lock = threading.Lock()
        self._ready = False
        self._active: dict[str, list[_Run]] = {}
        self._connectors: dict[str, str] = {}

    def _first_use(self) -> None:
        """Read the settings, start the endpoint and the artifacts (once per process)."""
        if self._ready:
            return
        with self._lock:
            if self._ready:
                return
            self._ready = True
            try:
                settings = MetricsSettings()
            except ValidationError as exc:
                _log.error(
                    "flowport-metrics: invalid FLOWPORT_METRICS_* setting, nothing served and "
                    "no artifacts: %s",
                    redact(str(exc)),
                )
                self.exporter, self.summaries = None, None
                return
            if self.summaries is not None and not settings.artifact:
                self.summaries = None
            if self.exporter is not None:
                self.exporter.start()
            mark_dead_at_exit()

    def _attribute(self, task_name: str) -> tuple[str, UUID | None]:
        """The connector and flow run of an event of ``task_name`` in this thread.

        A worker thread (a multipart part) has no context: it belongs to the running task of
        that name, when all of them work for one flow run.
        """
        scope = current_task()
        flow_run_id = _flow_run_id()
        with self._lock:
            runs = list(self._active.get(task_name, ()))
            known = self._connectors.get(task_name, UNKNOWN)
        if scope is not None and scope.task_name == task_name:
            connector = scope.connector
        else:
            connector = runs[-1].connector if runs else known
        if flow_run_id is None:
            ids = {run.flow_run_id for run in runs}
            flow_run_id = ids.pop() if len(ids) == 1 else None
        return connector, flow_run_id

    @hookimpl
    def flowport_task_started(self, task_name: str) -> None:
        self._first_use()
        scope = current_task()
        flow_run_id = _flow_run_id()
        with self._lock:
            if scope is not None and scope.task_name == task_name:
                self._connectors[task_name] = scope.connector
            connector = self._connectors.get(task_name, UNKNOWN)
            self._active.setdefault(task_name, []).append(_Run(connector, flow_run_id))
        if self.summaries is not None and flow_run_id is not None:
            key = artifact_key("metrics") if FlowRunContext.get() is not None else None
            self.summaries.run(flow_run_id, key)
        self.metrics.child(self.metrics.in_progress, connector, task_name).inc()

    @hookimpl
    def flowport_task_succeeded(self, task_name: str, duration: float) -> None:
        self._finished(task_name, duration, None)

    @hookimpl
    def flowport_task_failed(
        self, task_name: str, exception: BaseException, duration: float
    ) -> None:
        self._finished(task_name, duration, exception)

    def _finished(self, task_name: str, duration: float, exc: BaseException | None) -> None:
        flow_run_id = _flow_run_id()
        with self._lock:
            runs = self._active.get(task_name, [])
            mine = [r for r in runs if r.flow_run_id == flow_run_id] or runs
            run = mine[-1] if mine else None
            if run is not None:
                runs.remove(run)
            connector = run.connector if run else self._connectors.get(task_name, UNKNOWN)
        if run is not None:
            self.metrics.child(self.metrics.in_progress, connector, task_name).dec()
        outcome = "succeeded" if exc is None else "failed"
        self.metrics.child(self.metrics.duration, connector, task_name, outcome).observe(duration)
        if exc is not None:
            self.metrics.child(
                self.metrics.failures, connector, task_name, type(exc).__name__
            ).inc()
        summary = self._summary(flow_run_id)
        if summary is None or self.summaries is None:
            return
        with summary.lock:
            tally = summary.tally(connector, task_name)
            tally.runs += 1
            tally.failed += exc is not None
            tally.seconds += duration
        self.summaries.publish(summary)

    @hookimpl
    def flowport_task_retried(self, name: str) -> None:
        connector, flow_run_id = self._attribute(name)
        self.metrics.child(self.metrics.retries, connector, name).inc()
        summary = self._summary(flow_run_id)
        if summary is not None:
            with summary.lock:
                summary.tally(connector, name).retries += 1

    @hookimpl
    def flowport_units_moved(self, task_name: str, connector: str, unit: str, amount: int) -> None:
        task = task_name or UNKNOWN
        found, flow_run_id = self._attribute(task)
        connector = connector or found
        self.metrics.count_moved(connector, task, unit, amount)
        summary = self._summary(flow_run_id)
        if summary is not None:
            with summary.lock:
                moved = summary.tally(connector, task).moved
                moved[unit] = moved.get(unit, 0) + amount

    def _summary(self, flow_run_id: UUID | None) -> Any:
        if self.summaries is None or flow_run_id is None:
            return None
        return self.summaries.get(flow_run_id)


#: The instance the ``flowport.plugins`` entry point registers: the default registry, the
#: process-wide endpoint, one summary artifact per flow run.
plugin = MetricsPlugin(exporter=exporter, summaries=Summaries())
