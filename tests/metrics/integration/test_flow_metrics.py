"""A real flow with real flowport tasks on real servers, watched through flowport-metrics.

The flow uploads a 12 MiB file to the S3 gateway (three multipart parts from worker threads),
downloads it back (parallel ranged GETs), fails one download of a missing key, and bulk-inserts
5,000 rows into PostgreSQL through a fault proxy that drops the connection mid-load. The
endpoint of the autoloaded plugin is scraped before the flow, from inside the bulk_insert task
while it runs, and after; the counters must equal what moved (the object's size from the
server, the table's row count) and the retries the hooks reported. The summary artifact is
read back through the Prefect API.
"""

from __future__ import annotations

import os
import re
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

import flowport_metrics.exporter as exporter_module
from flowport import RetryPolicy
from flowport.hookspecs import hookimpl
from flowport.plugins import loaded_plugins, register, unregister
from flowport.progress import Progress
from flowport_s3 import AwsCredentials, S3Bucket, download_bytes, download_file, upload_file
from flowport_sql import SqlDatabase, bulk_insert, execute, fetch_one
from tests.metrics.helpers import sample, samples, scrape

pytestmark = pytest.mark.usefixtures("prefect_server")

SIZE = 12 * 1024 * 1024
ROWS = 5_000
BATCH = 1_000
#: Patient enough to outlast the proxy being down for a second, quick to give up otherwise.
POLICY = RetryPolicy(attempts=30, initial_delay=0.2, max_delay=0.5, deadline=30.0)
NAMES = (
    "flowport_moved_bytes_total",
    "flowport_moved_rows_total",
    "flowport_retries_total",
    "flowport_task_failures_total",
    "flowport_task_duration_seconds_count",
    "flowport_tasks_in_progress",
)


class Retries:
    """Counts the retry hooks flowport fires (the figure the counter must equal)."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    @hookimpl
    def flowport_task_retried(self, name: str) -> None:
        self.seen.append(name)


@pytest.fixture
def bucket(s3_server: Any) -> Iterator[S3Bucket]:
    name = f"m-{uuid.uuid4().hex[:20]}"
    client = s3_server.client()
    client.create_bucket(Bucket=name)
    yield S3Bucket(
        bucket_name=name,
        part_size=5 * 1024 * 1024,
        credentials=AwsCredentials(
            aws_access_key_id=s3_server.access_key,
            aws_secret_access_key=s3_server.secret_key,
            region_name=s3_server.region,
            endpoint_url=s3_server.endpoint_url,
            addressing_style="path",
        ),
    )
    for obj in client.list_objects_v2(Bucket=name).get("Contents", []):
        client.delete_object(Bucket=name, Key=obj["Key"])
    client.delete_bucket(Bucket=name)


@pytest.fixture
def tables(postgres: Any, toxiproxy: Any) -> Iterator[tuple[SqlDatabase, SqlDatabase, Any, str]]:
    """A fresh table, reachable directly and through a fault proxy of this test's own."""
    direct = SqlDatabase(url=postgres.sqlalchemy_url)
    table = f"m_{uuid.uuid4().hex[:10]}"
    execute.fn(direct, f"CREATE TABLE {table} (id INTEGER PRIMARY KEY, name VARCHAR(40))")
    proxy = toxiproxy.proxy(f"metrics-{uuid.uuid4().hex[:8]}", f"{postgres.host}:{postgres.port}")
    url = postgres.sqlalchemy_url.replace(f":{postgres.port}/", f":{proxy.port}/")
    proxied = SqlDatabase(url=url, connect_timeout=5)
    yield direct, proxied, proxy, table
    proxied.dispose()
    proxy.enable()
    proxy.delete()
    execute.fn(direct, f"DROP TABLE IF EXISTS {table}")
    direct.dispose()


def rows(proxy: Any, url: str, during: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The rows to load. Drawing batch 3, the path to the server goes down for a second (its
    commit fails and is retried); drawing batch 4 (three batches committed), the endpoint is
    scraped from inside the running task."""
    for i in range(ROWS):
        if i == 2 * BATCH:
            proxy.disable()
            threading.Timer(1.0, proxy.enable).start()
        if i == 3 * BATCH:
            during["text"] = scrape(url)
        yield {"id": i, "name": f"row {i}"}


def delta(after: dict[Any, float], before: dict[Any, float], name: str, **labels: str) -> float:
    key = (name, tuple(sorted(labels.items())))
    return after.get(key, 0.0) - before.get(key, 0.0)


def table_of(markdown: str) -> dict[tuple[str, str], list[str]]:
    """The artifact's rows by (connector, task): runs, failed, retries, bytes, rows, ..."""
    found = {}
    for line in markdown.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) > 5 and re.fullmatch(r"[\d,]+", cells[2]):
            found[(cells[0], cells[1])] = [c.replace(",", "") for c in cells[2:-1]]
    return found


def test_counters_equal_what_a_real_flow_moved_scraped_during_and_after(
    bucket: S3Bucket,
    tables: tuple[SqlDatabase, SqlDatabase, Any, str],
    s3_server: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    direct, proxied, proxy, table = tables
    monkeypatch.setattr(Progress, "interval", 0.0)  # every batch reported as it commits
    assert loaded_plugins()["metrics"] == "flowport-metrics"  # autoloaded, not registered here
    source = tmp_path / "blob.bin"
    source.write_bytes(os.urandom(SIZE))
    endpoint = exporter_module.start_server()  # what the first flowport task would start
    assert endpoint.url is not None
    before = samples(scrape(endpoint.url), NAMES)
    during: dict[str, Any] = {}
    retries = Retries()

    @flow(name=f"metrics-{uuid.uuid4().hex[:8]}")
    def move() -> Any:
        upload_file(bucket, source, "data/blob.bin")
        download_file(bucket, "data/blob.bin", path=tmp_path / "back.bin")
        missing = download_bytes(bucket, "data/missing.bin", return_state=True)
        loaded = bulk_insert(
            proxied,
            table,
            rows(proxy, endpoint.url or "", during),
            batch_size=BATCH,
            retry_policy=POLICY,
        )
        return missing.is_failed(), loaded

    register(retries, name="retries-seen")
    try:
        state = move(return_state=True)
    finally:
        unregister(retries)
    assert state.is_completed() and state.result() == (True, ROWS)
    after = samples(scrape(endpoint.url), NAMES)

    stored = s3_server.client().head_object(Bucket=bucket.bucket_name, Key="data/blob.bin")
    assert stored["ContentLength"] == SIZE == (tmp_path / "back.bin").stat().st_size
    in_table = fetch_one.fn(direct, f"SELECT COUNT(*) AS n FROM {table}")["n"]
    assert in_table == ROWS
    assert retries.seen and set(retries.seen) == {"bulk_insert"}

    s3 = {"connector": "s3"}
    sql = {"connector": "sql", "task": "bulk_insert"}
    moved_bytes, moved_rows = "flowport_moved_bytes_total", "flowport_moved_rows_total"
    runs = "flowport_task_duration_seconds_count"

    # During: three batches committed, the task still running, the S3 tasks done.
    mid = samples(during["text"], NAMES)
    assert delta(mid, before, moved_rows, **sql) == 3 * BATCH
    assert delta(mid, before, moved_bytes, **s3, task="upload_file") == SIZE
    assert delta(mid, before, "flowport_tasks_in_progress", **sql) == 1

    # After: every counter moved by exactly what the servers hold.
    assert delta(after, before, moved_bytes, **s3, task="upload_file") == SIZE
    assert delta(after, before, moved_bytes, **s3, task="download_file") == SIZE
    assert delta(after, before, moved_rows, **sql) == in_table
    assert delta(after, before, "flowport_retries_total", **sql) == len(retries.seen)
    failures = "flowport_task_failures_total"
    assert delta(after, before, failures, **s3, task="download_bytes", error="NotFound") == 1
    assert delta(after, before, runs, **s3, task="download_bytes", outcome="failed") == 1
    for task in ("upload_file", "download_file"):
        assert delta(after, before, runs, **s3, task=task, outcome="succeeded") == 1
    assert delta(after, before, runs, **sql, outcome="succeeded") == 1
    assert sample(scrape(endpoint.url), "flowport_tasks_in_progress", **sql) == 0

    # The flow run's summary artifact, read back from the Prefect API: one, updated in place.
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(
                flow_run_id=ArtifactFilterFlowRunId(any_=[state.state_details.flow_run_id])
            )
        )
    mine = [a for a in artifacts if a.type == "markdown"]
    assert len(mine) == 1 and mine[0].key == f"flowport-{move.name}-metrics"
    assert mine[0].task_run_id is None  # the flow run's, not one task's
    summary = table_of(str(mine[0].data))
    # runs, failed, retries, bytes, rows, messages
    assert summary[("s3", "upload_file")][:5] == ["1", "0", "0", str(SIZE), "0"]
    assert summary[("s3", "download_file")][:5] == ["1", "0", "0", str(SIZE), "0"]
    assert summary[("s3", "download_bytes")][:5] == ["1", "1", "0", "0", "0"]
    assert summary[("sql", "bulk_insert")][:5] == [
        "1",
        "0",
        str(len(retries.seen)),
        "0",
        str(ROWS),
    ]
    assert summary[("", "**total**")][:5] == [
        "4",
        "1",
        str(len(retries.seen)),
        str(2 * SIZE),
        str(ROWS),
    ]
