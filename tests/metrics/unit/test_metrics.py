"""Hooks -> Prometheus metrics, each test counting into a registry of its own."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry

import flowport_metrics
from flowport import InvalidInput
from flowport.plugins import loaded_plugins, plugin_manager, register, unregister
from flowport.progress import Progress
from flowport.task import RetryingTask
from flowport_metrics import MetricsPlugin
from tests.metrics.helpers import load_rows, upload_parts

ROWS = {"connector": "tests", "task": "load_rows"}
PARTS = {"connector": "tests", "task": "upload_parts"}


@pytest.fixture
def registry() -> Iterator[CollectorRegistry]:
    """A plugin instance counting into a fresh registry (no endpoint, no artifacts)."""
    reg = CollectorRegistry()
    plugin = MetricsPlugin(reg)
    register(plugin, name=f"metrics-{uuid.uuid4().hex}")
    yield reg
    unregister(plugin)


def value(reg: CollectorRegistry, name: str, **labels: str) -> float | None:
    return reg.get_sample_value(name, labels)


def test_installed_distribution_is_autoloaded_through_its_entry_point() -> None:
    assert loaded_plugins()["metrics"] == "flowport-metrics"
    assert plugin_manager().get_plugin("metrics") is flowport_metrics.plugin


def test_rows_moved_and_duration_per_connector_and_task(registry: CollectorRegistry) -> None:
    assert load_rows.fn([100, 250, 650]) == 1000

    assert value(registry, "flowport_moved_rows_total", **ROWS) == 1000
    assert value(registry, "flowport_moved_bytes_total", **ROWS) is None
    count = "flowport_task_duration_seconds_count"
    assert value(registry, count, **ROWS, outcome="succeeded") == 1
    assert value(registry, count, **ROWS, outcome="failed") is None
    assert value(registry, "flowport_retries_total", **ROWS) is None
    assert value(registry, "flowport_tasks_in_progress", **ROWS) == 0


def test_transient_failures_retried_in_the_task_thread_are_counted(
    registry: CollectorRegistry,
) -> None:
    load_rows.fn([10, 20], flaky=3)

    assert value(registry, "flowport_retries_total", **ROWS) == 3
    assert value(registry, "flowport_moved_rows_total", **ROWS) == 30  # each batch once


def test_permanent_failure_counts_the_failure_and_what_moved_before_it(
    registry: CollectorRegistry,
) -> None:
    with pytest.raises(InvalidInput):
        load_rows.fn([5, 7, 9], fail_after=2)

    assert value(registry, "flowport_moved_rows_total", **ROWS) == 12
    assert value(registry, "flowport_task_failures_total", **ROWS, error="InvalidInput") == 1
    count = "flowport_task_duration_seconds_count"
    assert value(registry, count, **ROWS, outcome="failed") == 1
    assert value(registry, count, **ROWS, outcome="succeeded") is None
    assert value(registry, "flowport_tasks_in_progress", **ROWS) == 0


def test_parts_moved_and_retried_in_worker_threads_count_under_their_task(
    registry: CollectorRegistry,
) -> None:
    # Worker threads carry no context: the plugin attributes their retries to the one
    # running task of that name, and Progress remembers its task for the bytes.
    upload_parts.fn([1000 + i for i in range(20)], flaky=True)

    assert value(registry, "flowport_moved_bytes_total", **PARTS) == sum(
        1000 + i for i in range(20)
    )
    assert value(registry, "flowport_retries_total", **PARTS) == 20
    assert (
        value(registry, "flowport_retries_total", connector="unknown", task="upload_parts") is None
    )


class Probe(RetryingTask):
    """Reads the in-progress gauge of its own task while it runs."""

    def run(self, registry: CollectorRegistry) -> float | None:
        return registry.get_sample_value(
            "flowport_tasks_in_progress", {"connector": "test_metrics", "task": "probe"}
        )

    def is_transient(self, exc: BaseException) -> bool:
        return False


def test_in_progress_gauge_counts_running_task_runs(registry: CollectorRegistry) -> None:
    # A task defined in module test_metrics: the connector is its class's top-level package.
    Probe.__module__ = "test_metrics"
    assert Probe().fn(registry) == 1
    assert (
        value(registry, "flowport_tasks_in_progress", connector="test_metrics", task="probe") == 0
    )


def test_progress_outside_a_task_and_other_units(registry: CollectorRegistry) -> None:
    with Progress("consume", None, unit="messages") as progress:
        progress.advance(3)
        progress.advance(4)
    with Progress("list", None, unit="objects") as progress:
        progress.advance(2)

    unknown = {"connector": "unknown", "task": "unknown"}
    assert value(registry, "flowport_moved_messages_total", **unknown) == 7
    assert value(registry, "flowport_moved_units_total", **unknown, unit="objects") == 2


def test_without_the_plugin_registered_nothing_is_counted() -> None:
    reg = CollectorRegistry()
    plugin = MetricsPlugin(reg)
    register(plugin, name="metrics-unregistered")
    unregister(plugin)
    load_rows.fn([3])
    assert value(reg, "flowport_moved_rows_total", **ROWS) is None
