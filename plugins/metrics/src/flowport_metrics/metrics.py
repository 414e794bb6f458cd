"""The Prometheus metrics: what moved, retries, failures and durations, per connector and task."""

from __future__ import annotations

from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.metrics import MetricWrapperBase

LABELS = ("connector", "task")
#: Units that get a counter of their own; any other unit goes to ``flowport_moved_units_total``.
UNITS = ("bytes", "rows", "messages")
#: Transfers take from milliseconds to hours.
DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)


class Metrics:
    """Every flowport metric, registered in ``registry`` (a fresh one per test)."""

    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        self.registry = registry
        self.moved = {
            unit: Counter(
                f"flowport_moved_{unit}",
                f"{unit.capitalize()} moved by flowport tasks",
                LABELS,
                registry=registry,
            )
            for unit in UNITS
        }
        self.moved_other = Counter(
            "flowport_moved_units",
            "Other units moved by flowport tasks",
            (*LABELS, "unit"),
            registry=registry,
        )
        self.retries = Counter(
            "flowport_retries",
            "Transient failures retried inside flowport tasks",
            LABELS,
            registry=registry,
        )
        self.failures = Counter(
            "flowport_task_failures",
            "flowport task runs that raised, by exception type",
            (*LABELS, "error"),
            registry=registry,
        )
        self.duration = Histogram(
            "flowport_task_duration_seconds",
            "Duration of flowport task runs",
            (*LABELS, "outcome"),
            buckets=DURATION_BUCKETS,
            registry=registry,
        )
        self.in_progress = Gauge(
            "flowport_tasks_in_progress",
            "flowport task runs running now",
            LABELS,
            registry=registry,
            multiprocess_mode="livesum",
        )

        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}

    def child(self, metric: MetricWrapperBase, *labels: str) -> Any:
        """``metric.labels(*labels)``, remembered: hooks fire per task run and per report."""
        key = (id(metric), labels)
        found = self._children.get(key)
        if found is None:  # two threads may both get here: labels() returns the same child
            found = self._children[key] = metric.labels(*labels)
        return found

    def count_moved(self, connector: str, task: str, unit: str, amount: int) -> None:
        counter = self.moved.get(unit)
        if counter is not None:
            self.child(counter, connector, task).inc(amount)
        else:
            self.child(self.moved_other, connector, task, unit).inc(amount)
