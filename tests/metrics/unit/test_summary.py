"""The per flow run markdown: one row per connector and task, totals, nothing unsafe."""

from __future__ import annotations

import logging
import socket
import uuid

import pytest

from flowport_metrics.summary import FlowRunSummary, Summaries, TaskTally, render


def test_markdown_table_per_task_with_totals() -> None:
    summary = FlowRunSummary(uuid.uuid4())
    summary.tasks[("s3", "upload_file")] = TaskTally(1, 0, 2, 1.5, {"bytes": 3 * 1024 * 1024})
    summary.tasks[("sql", "bulk_insert")] = TaskTally(2, 1, 0, 0.25, {"rows": 5000})
    summary.tasks[("kafka", "consume")] = TaskTally(1, 0, 0, 2.0, {"messages": 12, "objects": 3})

    assert render(summary) == (
        "### flowport: what moved in this flow run\n"
        "\n"
        "| connector | task | runs | failed | retries | bytes | rows | messages | objects"
        " | seconds |\n"
        "|:--|:--|--:|--:|--:|--:|--:|--:|--:|--:|\n"
        "| kafka | consume | 1 | 0 | 0 | 0 | 0 | 12 | 3 | 2.00 |\n"
        "| s3 | upload_file | 1 | 0 | 2 | 3,145,728 | 0 | 0 | 0 | 1.50 |\n"
        "| sql | bulk_insert | 2 | 1 | 0 | 0 | 5,000 | 0 | 0 | 0.25 |\n"
        "|  | **total** | 4 | 1 | 2 | 3,145,728 | 5,000 | 12 | 3 | 3.75 |\n"
        "\n"
        "Moved 3.0 MiB, 5,000 rows, 12 messages, 3 objects; 2 retries, 1 failed task runs"
        " (seconds add up task durations, which may overlap).\n"
    )


def test_cells_cannot_break_the_table_or_show_a_secret() -> None:
    summary = FlowRunSummary(uuid.uuid4())
    summary.tasks[("sql", "load|postgresql://u:hunter2@db/x")] = TaskTally(1)
    text = render(summary)
    assert "load\\|postgresql://" in text
    assert "hunter2" not in text


def test_an_api_refusing_the_artifact_is_logged_once_and_never_raised(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from prefect.settings import PREFECT_API_URL, PREFECT_CLIENT_MAX_RETRIES, temporary_settings

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    summaries = Summaries()
    summary = summaries.run(uuid.uuid4(), "flowport-x-metrics")
    summary.tally("s3", "upload_file").runs += 1
    updates = {PREFECT_API_URL: f"http://127.0.0.1:{closed}/api", PREFECT_CLIENT_MAX_RETRIES: 0}
    with temporary_settings(updates=updates), caplog.at_level(logging.WARNING):
        summaries.publish(summary)
        summaries.publish(summary)

    assert summary.artifact_id is None
    assert caplog.text.count("not written") == 1
    assert str(summary.flow_run_id) in caplog.text
