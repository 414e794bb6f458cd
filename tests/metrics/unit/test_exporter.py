"""The /metrics endpoint: once per process, a taken port, switched off, several processes."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Counter

import flowport_metrics.exporter as exporter_module
from flowport_metrics import Exporter
from tests.metrics.helpers import load_rows, sample, scrape

ROOT = Path(__file__).resolve().parents[3]


def test_started_once_per_process_and_serves_its_registry() -> None:
    reg = CollectorRegistry()
    counter = Counter("flowport_probe", "A probe", registry=reg)
    exporter = Exporter(reg)
    assert exporter.endpoint is None

    first = exporter.start(port=0, addr="127.0.0.1")
    again = exporter.start(port=1, addr="127.0.0.1")  # asking again changes nothing

    assert first.port is not None and first is again
    counter.inc(5)
    assert sample(scrape(first.url or ""), "flowport_probe_total") == 5


def test_port_taken_keeps_counting_and_says_why(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with caplog.at_level(logging.WARNING, "flowport.metrics"):
            endpoint = Exporter(CollectorRegistry()).start(port=port, addr="127.0.0.1")

    assert endpoint.port is None and endpoint.url is None
    assert f"port {port} on 127.0.0.1 is taken" in endpoint.reason
    assert "PROMETHEUS_MULTIPROC_DIR" in endpoint.reason
    assert endpoint.reason in caplog.text


def test_serving_switched_off_by_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLOWPORT_METRICS_SERVE", "false")
    endpoint = Exporter(CollectorRegistry()).start(port=0, addr="127.0.0.1")
    assert endpoint.port is None
    assert "FLOWPORT_METRICS_SERVE" in endpoint.reason


def test_autoloaded_plugin_serves_the_default_registry_from_the_first_task() -> None:
    load_rows.fn([1])
    endpoint = exporter_module.exporter.endpoint
    assert endpoint is not None and endpoint.url is not None  # FLOWPORT_METRICS_PORT=0 here
    name, labels = "flowport_moved_rows_total", {"connector": "tests", "task": "load_rows"}
    before = sample(scrape(endpoint.url), name, **labels)

    load_rows.fn([40, 2])

    assert exporter_module.exporter.endpoint is endpoint
    assert sample(scrape(endpoint.url), name, **labels) - before == 42


WORKER = "import sys; from tests.metrics.helpers import load_rows; load_rows.fn([int(sys.argv[1])])"


def test_several_processes_share_one_endpoint_in_multiprocess_mode(tmp_path: Path) -> None:
    """Short-lived workers count into PROMETHEUS_MULTIPROC_DIR; the standing exporter
    (``python -m flowport_metrics``) serves their sum after they exited."""
    env = {
        **os.environ,
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path),
        "FLOWPORT_METRICS_SERVE": "false",
        "PYTHONPATH": str(ROOT),
    }
    for rows in (300, 700):
        subprocess.run([sys.executable, "-c", WORKER, str(rows)], env=env, cwd=ROOT, check=True)
    env.pop("FLOWPORT_METRICS_SERVE")
    standing = subprocess.Popen(
        [sys.executable, "-m", "flowport_metrics", "--port", "0", "--addr", "127.0.0.1"],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert standing.stdout is not None
        line = standing.stdout.readline()
        assert line.startswith("serving http://127.0.0.1:"), line
        text = scrape(line.split()[1])
    finally:
        standing.terminate()
        standing.wait(30)

    labels = {"connector": "tests", "task": "load_rows"}
    assert sample(text, "flowport_moved_rows_total", **labels) == 1000
    count = "flowport_task_duration_seconds_count"
    assert sample(text, count, **labels, outcome="succeeded") == 2
    assert sample(text, "flowport_tasks_in_progress", **labels) == 0


def test_standing_exporter_refuses_to_start_without_a_shared_directory() -> None:
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    done = subprocess.run(
        [sys.executable, "-m", "flowport_metrics", "--port", "0"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2
    assert "PROMETHEUS_MULTIPROC_DIR is not set" in done.stderr
