"""Kafka -> Parquet on S3 and Kafka -> SQL, on the real broker, S3 gateway and PostgreSQL.

Every message must land exactly once: the Parquet files are read back with pyarrow straight
from the S3 gateway (boto3, not flowport), the topic is read independently with kcat
(librdkafka), and the two are compared message by message. Crashes: a sink that fails after
the upload and before the commit, and SIGKILL of the S3 gateway or of the broker in the
middle of a transfer; each is followed by a rerun and the same comparison.
"""

from __future__ import annotations

import io
import json
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from prefect import flow

from flowport.retry import RetryPolicy
from flowport.store import ObjectStore
from flowport.transfer import Extract, StoreSink, TransferResult, transfer
from flowport.transfer_tasks import run_transfer
from flowport_kafka import (
    ConsumeToStore,
    ConsumeToStoreResult,
    KafkaConnection,
    KafkaSource,
    Record,
    consume_to_store,
    create_topics,
    produce,
)
from flowport_s3 import AwsCredentials, S3Bucket, S3Store
from flowport_sql import SqlDatabase, execute, fetch_all, upsert

pytestmark = pytest.mark.usefixtures("prefect_server")

Msg = tuple[int, int, bytes, bytes]  # partition, offset, key, value


@pytest.fixture(scope="module")
def kcat() -> str:
    found = shutil.which("kcat")
    if found is None:
        from flowport_testing.services.base import apt_install

        apt_install(["kcat"])
        found = shutil.which("kcat")
    assert found is not None, "kcat is not installed and apt-get install kcat did not add it"
    return found


@pytest.fixture
def broker(kafka: Any) -> Iterator[KafkaConnection]:
    block = KafkaConnection(bootstrap_servers=kafka.bootstrap_servers, client_id="flows-tests")
    yield block
    block.close()


class Bucket:
    """A fresh bucket on the S3 gateway: a flowport store, and raw boto3 reads for checks."""

    def __init__(self, s3: Any) -> None:
        self.s3 = s3
        self.name = f"kt-{uuid.uuid4().hex[:12]}"
        s3.client().create_bucket(Bucket=self.name)
        creds = AwsCredentials(
            aws_access_key_id=s3.access_key,
            aws_secret_access_key=s3.secret_key,
            region_name=s3.region,
            endpoint_url=s3.endpoint_url,
            addressing_style="path",
        )
        self.store: ObjectStore = S3Store(S3Bucket(bucket_name=self.name, credentials=creds))

    def keys(self, prefix: str) -> list[str]:
        client = self.s3.client()
        pages = client.get_paginator("list_objects_v2").paginate(Bucket=self.name, Prefix=prefix)
        return sorted(o["Key"] for page in pages for o in page.get("Contents", []))

    def table(self, key: str) -> pa.Table:
        body = self.s3.client().get_object(Bucket=self.name, Key=key)["Body"].read()
        return pq.read_table(io.BytesIO(body))

    def messages(self, prefix: str) -> list[Msg]:
        """Every message in every data file under ``prefix`` (state objects skipped)."""
        out: list[Msg] = []
        for key in self.keys(prefix):
            if "/_flowport_state/" in key:
                continue
            table = self.table(key)
            out += zip(
                table.column("partition").to_pylist(),
                table.column("offset").to_pylist(),
                table.column("key").to_pylist(),
                table.column("value").to_pylist(),
                strict=True,
            )
        return out


@pytest.fixture
def bucket(s3_server: Any) -> Bucket:
    return Bucket(s3_server)


def _topic(broker: KafkaConnection, partitions: int) -> str:
    name = f"orders-{uuid.uuid4().hex[:8]}"
    create_topics.fn(broker, name, partitions=partitions)
    return name


def _orders(n: int, start: int = 0) -> list[Record]:
    return [
        Record(
            json.dumps({"id": i % 700, "version": i, "total": i / 8}).encode(),
            key=b"order-%d" % (i % 700),
        )
        for i in range(start, start + n)
    ]


def _kcat_read(kcat: str, bootstrap: str, topic: str) -> list[Msg]:
    """The whole topic read by librdkafka: an independent reader."""
    import subprocess

    out = subprocess.run(
        [kcat, "-C", "-b", bootstrap, "-t", topic, "-o", "beginning", "-e", "-J", "-q"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    msgs = []
    for line in out.splitlines():
        m = json.loads(line)
        msgs.append((m["partition"], m["offset"], m["key"].encode(), m["payload"].encode()))
    return msgs


def _exactly_once(stored: list[Msg], produced: list[Msg], n: int) -> None:
    assert len(produced) == n, "kcat must see every produced message"
    positions = [(p, o) for p, o, _, _ in stored]
    duplicated = len(positions) - len(set(positions))
    lost = set(produced) - set(stored)
    assert (len(lost), duplicated) == (0, 0), f"{len(lost)} lost, {duplicated} duplicated"
    assert sorted(stored) == sorted(produced)


# --------------------------------------------------------------------------- Kafka -> S3


@pytest.mark.parametrize("partitions", [3, 6])
def test_kafka_to_parquet_on_s3_exactly_once(
    partitions: int, broker: KafkaConnection, bucket: Bucket, kafka: Any, kcat: str
) -> None:
    n = 12_000
    topic = _topic(broker, partitions)
    group = f"lake-{uuid.uuid4().hex[:8]}"
    members = 2 if partitions == 6 else None

    @flow
    def lake() -> list[ConsumeToStoreResult]:
        produce(broker, topic, _orders(n))
        if members is None:
            return [consume_to_store(broker, topic, group, bucket.store, "raw", max_messages=2500)]
        futures = [
            consume_to_store.submit(
                broker,
                topic,
                group,
                bucket.store,
                "raw",
                max_messages=2500,
                member=m,
                members=members,
            )
            for m in range(members)
        ]
        return [f.result() for f in futures]

    results = lake()
    assert sum(r.messages for r in results) == n
    assert all(r.stopped_by == "end" for r in results)
    # one Parquet file per consumed batch, named after its ranges
    files = [f for r in results for f in r.files]
    assert len(files) == sum(r.batches for r in results) >= n // 2500
    keys = [k for k in bucket.keys("raw/") if "/_flowport_state/" not in k]
    assert sorted(f"s3://{bucket.name}/{k}" for k in keys) == sorted(files)
    assert all(k.startswith(f"raw/{topic}") and f"{topic}-p" in k for k in keys)
    if members:  # member i of 2 holds partitions i, i+2, i+4 only
        for m, r in enumerate(results):
            for f in r.files:
                parts = set(bucket.table(f.split(f"{bucket.name}/", 1)[1]).column("partition"))
                assert {p.as_py() for p in parts} <= {m, m + 2, m + 4}
    _exactly_once(bucket.messages("raw/"), _kcat_read(kcat, kafka.bootstrap_servers, topic), n)
    # drained: a second run finds nothing
    again = consume_to_store.fn(broker, topic, group, bucket.store, "raw", max_messages=2500)
    assert again.messages == 0 and again.files == []


def test_run_transfer_moves_one_batch_with_the_core_task(
    broker: KafkaConnection, bucket: Bucket, kafka: Any, kcat: str
) -> None:
    topic = _topic(broker, 3)
    produce.fn(broker, topic, _orders(900))
    source = KafkaSource(broker, topic, "core-task", max_messages=1000)
    sink = StoreSink(bucket.store, "core")

    @flow
    def once() -> TransferResult:
        return run_transfer(source, sink, "orders")

    result = once()
    assert result.rows == 900 and result.source == f"kafka://{kafka.bootstrap_servers}/{topic}"
    assert len(result.written) == 1 and "-p0-0-" in result.written[0]
    _exactly_once(bucket.messages("core/"), _kcat_read(kcat, kafka.bootstrap_servers, topic), 900)
    assert once().rows == 0  # committed: nothing left


def test_sink_failing_after_upload_before_commit_rerun_rewrites_the_same_keys(
    broker: KafkaConnection, bucket: Bucket, kafka: Any, kcat: str
) -> None:
    topic = _topic(broker, 3)
    group = f"crash-{uuid.uuid4().hex[:8]}"
    produce.fn(broker, topic, _orders(3000))
    sink = StoreSink(bucket.store, "raw")

    class DiesAfterUpload:
        uri = sink.uri

        def state(self, name: str) -> Any:
            return sink.state(name)

        def load(self, extract: Extract, name: str) -> Any:
            sink.load(extract, name)
            raise ConnectionResetError("worker died after the upload, before the commit")

    with pytest.raises(ConnectionResetError):
        transfer(KafkaSource(broker, topic, group, max_messages=2000), DiesAfterUpload(), name="o")
    crashed = bucket.keys("raw/o-")
    assert len(crashed) == 1
    produce.fn(broker, topic, _orders(500, start=3000))  # the topic moves on meanwhile
    rerun = consume_to_store.fn(
        broker, topic, group, bucket.store, "raw", name="o", max_messages=2000
    )
    assert rerun.files[0] == f"s3://{bucket.name}/{crashed[0]}"  # the same key, rewritten
    assert rerun.messages == 3500
    _exactly_once(bucket.messages("raw/"), _kcat_read(kcat, kafka.bootstrap_servers, topic), 3500)


def _run_in_thread(
    fn: Callable[[], ConsumeToStoreResult],
) -> tuple[threading.Thread, dict[str, Any]]:
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["result"] = fn()
        except BaseException as exc:  # a failed run is fine here: the rerun must repair it
            outcome["error"] = exc

    thread = threading.Thread(target=target)
    thread.start()
    return thread, outcome


def _wait_for_files(bucket: Bucket, prefix: str, count: int, thread: threading.Thread) -> None:
    deadline = time.monotonic() + 180
    while len(bucket.keys(prefix)) < count:
        assert thread.is_alive(), "the transfer ended before the fault"
        assert time.monotonic() < deadline, "the transfer made no progress"
        time.sleep(0.05)


@pytest.mark.fault
def test_s3_gateway_sigkill_mid_transfer_then_rerun_loses_and_duplicates_nothing(
    broker: KafkaConnection, bucket: Bucket, s3_server: Any, kafka: Any, kcat: str
) -> None:
    n = 30_000
    topic = _topic(broker, 3)
    group = f"s3kill-{uuid.uuid4().hex[:8]}"
    produce.fn(broker, topic, _orders(n))
    run = lambda: consume_to_store.fn(  # noqa: E731
        broker, topic, group, bucket.store, "raw", max_messages=500
    )
    thread, outcome = _run_in_thread(run)
    _wait_for_files(bucket, "raw/", 6, thread)
    assert thread.is_alive()  # mid-transfer: 30,000 messages make 60 files
    s3_server.kill()
    time.sleep(1)
    s3_server.restart()
    thread.join(timeout=600)
    assert not thread.is_alive()
    rerun = run()
    first = outcome.get("result")
    assert rerun.stopped_by == "end" and (first.messages if first else 0) + rerun.messages <= n
    _exactly_once(bucket.messages("raw/"), _kcat_read(kcat, kafka.bootstrap_servers, topic), n)
    state = StoreSink(bucket.store, "raw").files(topic)
    assert sorted(state) == [k for k in bucket.keys("raw/") if "/_flowport_state/" not in k]


@pytest.mark.fault
def test_broker_sigkill_mid_transfer_then_rerun_loses_and_duplicates_nothing(
    broker: KafkaConnection, bucket: Bucket, kafka: Any, kcat: str
) -> None:
    n = 30_000
    topic = _topic(broker, 3)
    group = f"kkill-{uuid.uuid4().hex[:8]}"
    produce.fn(broker, topic, _orders(n))
    reader = KafkaConnection(
        bootstrap_servers=kafka.bootstrap_servers, client_id="flows-kill", request_timeout=5
    )
    run = lambda: consume_to_store.fn(  # noqa: E731
        reader, topic, group, bucket.store, "raw", max_messages=500
    )
    thread, outcome = _run_in_thread(run)
    _wait_for_files(bucket, "raw/", 6, thread)
    assert thread.is_alive()  # mid-transfer: 30,000 messages make 60 files
    kafka.kill()
    time.sleep(2)
    kafka.restart()
    thread.join(timeout=600)
    assert not thread.is_alive()
    # the rerun, as an orchestrator's retry would: the group coordinator may still be loading
    patient = ConsumeToStore(retry_policy=RetryPolicy(attempts=30, max_delay=2.0))
    rerun = patient.fn(reader, topic, group, bucket.store, "raw", max_messages=500)
    reader.close()
    first = outcome.get("result")
    assert rerun.stopped_by == "end" and (first.messages if first else 0) + rerun.messages <= n
    _exactly_once(bucket.messages("raw/"), _kcat_read(kcat, kafka.bootstrap_servers, topic), n)


# --------------------------------------------------------------------------- Kafka -> SQL


def test_kafka_to_postgres_upsert_commits_after_the_transaction(
    broker: KafkaConnection, postgres: Any, kafka: Any, kcat: str
) -> None:
    """No SqlTableSink yet: a flow upserts each consumed batch, then commits its offsets. A run
    that dies between the upsert and the commit redelivers the batch; the upsert by key makes
    the replay harmless, so the table ends equal to the topic's latest version per key."""
    db = SqlDatabase(url=postgres.sqlalchemy_url)
    table = f"orders_{uuid.uuid4().hex[:8]}"
    topic = _topic(broker, 3)
    group = f"sql-{uuid.uuid4().hex[:8]}"
    produce.fn(broker, topic, _orders(5000))
    execute.fn(
        db,
        f"CREATE TABLE {table} (id INTEGER PRIMARY KEY, version INTEGER, total DOUBLE PRECISION,"
        " kafka_partition INTEGER, kafka_offset BIGINT)",
    )
    schema = pa.schema([("id", pa.int64()), ("version", pa.int64()), ("total", pa.float64())])

    @flow
    def load(die_before_commit: bool) -> int:
        source = KafkaSource(
            broker, topic, group, max_messages=2000, value_format="json", schema=schema
        )
        moved = 0
        while True:
            extract = source.extract()
            if extract.commit is None:
                return moved
            batch = pa.Table.from_batches(list(extract.batches))
            rows = [
                {
                    "id": r["id"],
                    "version": r["version"],
                    "total": r["total"],
                    "kafka_partition": r["partition"],
                    "kafka_offset": r["offset"],
                }
                for r in batch.to_pylist()
            ]
            # within a partition later versions come later; across partitions each key
            # lives in one partition (keyed messages), so the last row per key wins
            upsert(db, table, rows, key_columns=["id"])
            if die_before_commit:
                raise RuntimeError("worker died after the upsert, before the commit")
            extract.commit()
            moved += len(rows)

    try:
        with pytest.raises(RuntimeError):
            load(die_before_commit=True)
        assert load(die_before_commit=False) == 5000  # the first batch again, then the rest
        got = fetch_all.fn(
            db, f"SELECT id, version, kafka_partition, kafka_offset FROM {table}", as_dicts=False
        )
        latest: dict[int, tuple[int, int, int]] = {}
        for p, o, _, value in sorted(_kcat_read(kcat, kafka.bootstrap_servers, topic)):
            doc = json.loads(value)
            latest[doc["id"]] = (doc["version"], p, o)
        assert sorted(tuple(r) for r in got) == sorted((k, *v) for k, v in latest.items())
        assert len(got) == 700
    finally:
        execute.fn(db, f"DROP TABLE IF EXISTS {table}")
        db.dispose()
