"""Partitioned transfers on a real Dask cluster: a ``dask scheduler`` and two ``dask worker``
processes the harness starts on loopback (``DaskTaskRunner(address=...)``), against
PostgreSQL, the S3 gateway and Kafka.

Each flow also runs on a ``ThreadPoolTaskRunner``; the outputs must be the same, byte for byte
where they can be (Parquet parts by SHA-256) and row by row, read back by independent readers
(psycopg, boto3 + pyarrow, kafka-python) rather than flowport. A worker SIGKILLed while it
runs a part: Dask runs that part again on the other worker, and the result is still every row
exactly once.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import os
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pyarrow.parquet as pq
import pytest
from distributed import Client
from prefect import flow, unmapped
from prefect.task_runners import ThreadPoolTaskRunner
from prefect_dask import DaskTaskRunner

from flowport.partition import Manifest, ShardedCopyResult, copy_sharded
from flowport.store import ObjectStore
from flowport_kafka import (
    ConsumeToStoreResult,
    KafkaConnection,
    Record,
    consume_to_store,
    create_topics,
    produce,
)
from flowport_s3 import AwsCredentials, S3Bucket, S3Store
from flowport_sql import SqlDatabase
from flowport_sql.partitioned import extract_partitioned
from flowport_testing import DaskCluster

pytestmark = pytest.mark.usefixtures("prefect_server")

Row = tuple[Any, ...]
COLUMNS = ("id", "k", "updated_at", "amount", "name", "payload")


@pytest.fixture
def cluster(dask_cluster: DaskCluster) -> Iterator[DaskCluster]:
    """The cluster, back to two workers after each test (a test may kill one)."""
    yield dask_cluster
    for n, pid in dict(dask_cluster.worker_pids).items():
        if pid is None:
            dask_cluster.start_worker(int(n))
    dask_cluster.wait_workers(dask_cluster.workers)


def _runners(cluster: DaskCluster) -> dict[str, Any]:
    return {
        "threads": ThreadPoolTaskRunner(max_workers=4),
        "dask": DaskTaskRunner(address=cluster.address),
    }


# -- S3 and PostgreSQL, with independent readers ------------------------------------------------


class Bucket:
    """A fresh bucket on the S3 gateway: a flowport store, and raw boto3 reads for checks."""

    def __init__(self, s3: Any, endpoint: str | None = None) -> None:
        self.s3 = s3
        self.name = f"dask-{uuid.uuid4().hex[:12]}"
        s3.client().create_bucket(Bucket=self.name)
        self.endpoint = endpoint or s3.endpoint_url

    @property
    def store(self) -> ObjectStore:
        """A new flowport store on the bucket (S3Store keeps its boto3 client once used, and
        a client does not pickle: each run gets its own)."""
        return self.store_at(self.endpoint)

    def store_at(self, endpoint: str) -> ObjectStore:
        creds = AwsCredentials(
            aws_access_key_id=self.s3.access_key,
            aws_secret_access_key=self.s3.secret_key,
            region_name=self.s3.region,
            endpoint_url=endpoint,
            addressing_style="path",
        )
        return S3Store(S3Bucket(bucket_name=self.name, credentials=creds))

    def keys(self, prefix: str) -> list[str]:
        pages = (
            self.s3.client()
            .get_paginator("list_objects_v2")
            .paginate(Bucket=self.name, Prefix=prefix)
        )
        return sorted(o["Key"] for page in pages for o in page.get("Contents", []))

    def get(self, key: str) -> bytes:
        return bytes(self.s3.client().get_object(Bucket=self.name, Key=key)["Body"].read())

    def put(self, key: str, data: bytes) -> None:
        self.s3.client().put_object(Bucket=self.name, Key=key, Body=data)


@pytest.fixture
def pg(postgres: Any) -> Iterator[SqlDatabase]:
    db = SqlDatabase(url=postgres.sqlalchemy_url)
    yield db
    db.dispose()


def _source_table(postgres: Any, rows: int, blocks: int = 1) -> str:
    """``rows`` rows: ``id`` 1..rows, key ``k`` spread over 1..3*rows with every 97th NULL,
    decimals, text (some NULL) and ``64 * blocks`` bytes of incompressible bytea each."""
    payload = " || ".join(f"sha512(int8send(g * 1000 + {b}))" for b in range(blocks))
    name = f"part_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(postgres.dsn, autocommit=True) as conn:
        conn.execute(
            f"CREATE TABLE {name} (id bigint PRIMARY KEY, k bigint, updated_at timestamptz, "
            "amount numeric(14,2), name text, payload bytea)"
        )
        conn.execute(
            f"INSERT INTO {name} SELECT g, CASE WHEN g %% 97 = 0 THEN NULL ELSE (g * 7919) %% "
            f"(3 * %(n)s) + 1 END, timestamptz '2024-01-01 00:00:00+00' + g * interval '1 s', "
            "CASE WHEN g %% 11 = 0 THEN NULL ELSE g * 1.25 END, "
            "CASE WHEN g %% 13 = 0 THEN NULL ELSE 'név-' || g END, "
            f"{payload} FROM generate_series(1, %(n)s) g",
            {"n": rows},
        )
        conn.execute(f"CREATE INDEX ON {name} (k)")
    return name


def _norm(row: Row) -> Row:
    out = []
    for value in row:
        if isinstance(value, dt.datetime) and value.tzinfo is not None:
            value = value.astimezone(dt.timezone.utc)
        if isinstance(value, memoryview | bytearray):
            value = bytes(value)
        out.append(value)
    return tuple(out)


def _pg_rows(postgres: Any, table: str) -> list[Row]:
    """Every row, read by plain psycopg (not flowport), in id order."""
    with psycopg.connect(postgres.dsn) as conn:
        rows = conn.execute(f"SELECT {', '.join(COLUMNS)} FROM {table} ORDER BY id").fetchall()
    return [_norm(r) for r in rows]


def _check_parts(bucket: Bucket, prefix: str, manifest: Manifest) -> list[Row]:
    """The manifest as stored matches what the gateway holds (keys, rows, SHA-256 of each
    part read back by boto3); each part's keys lie in its range; returns every row, id order,
    duplicates kept."""
    stored = json.loads(bucket.get(f"{prefix}/_flowport_state/manifest.json"))
    assert [p["key"] for p in stored["parts"]] == manifest.keys
    assert bucket.keys(f"{prefix}/part-") == sorted(manifest.keys), "a part not in the manifest"
    rows: list[Row] = []
    for part in stored["parts"]:
        body = bucket.get(part["key"])
        assert hashlib.sha256(body).hexdigest() == part["sha256"]
        assert len(body) == part["bytes"]
        table = pq.read_table(io.BytesIO(body))
        assert table.num_rows == part["rows"]
        keys = table.column("k").to_pylist()
        lower, upper = part["lower"], part["upper"]
        assert all(
            (k is None and part["index"] == 0) or (k is not None and lower <= k < upper)
            for k in keys
        ), f"part {part['index']} holds a key outside [{lower}, {upper})"
        rows += [
            _norm(r) for r in zip(*(table.column(c).to_pylist() for c in COLUMNS), strict=True)
        ]
    assert stored["rows"] == len(rows)
    return sorted(rows, key=lambda r: r[0])


@flow
def snapshot(db: SqlDatabase, table: str, store: ObjectStore, prefix: str, parts: int) -> Manifest:
    return extract_partitioned(db, table, "k", store, prefix, partitions=parts, row_group_rows=4096)


# -- SQL -> Parquet parts ------------------------------------------------------------------------


def test_partitioned_extract_on_dask_equals_threads_row_by_row_and_byte_for_byte(
    cluster: DaskCluster, postgres: Any, pg: SqlDatabase, s3_server: Any
) -> None:
    table = _source_table(postgres, 6_000)
    bucket = Bucket(s3_server)
    source = _pg_rows(postgres, table)
    manifests: dict[str, Manifest] = {}
    for label, runner in _runners(cluster).items():
        run = snapshot.with_options(task_runner=runner)
        manifests[label] = run(pg, table, bucket.store, f"{label}/{table}", 5)
        rows = _check_parts(bucket, f"{label}/{table}", manifests[label])
        assert rows == source  # every row once, nothing else
    threads, dask = manifests["threads"], manifests["dask"]
    assert len(dask.parts) == 5 and dask.rows == len(source)
    assert [(p.rows, p.sha256) for p in dask.parts] == [(p.rows, p.sha256) for p in threads.parts]


def _executing(client: Client, function: str) -> tuple[str, str] | None:
    """(worker address, task key) of a task whose call stack, sampled right now on its
    worker, is inside ``function``; None when no running task is."""
    for worker, stacks in client.call_stack().items():
        for key, stack in stacks.items():
            if function in str(stack):
                return worker, str(key)
    return None


def test_worker_sigkilled_mid_part_the_part_reruns_on_the_other_worker_nothing_lost_or_doubled(
    cluster: DaskCluster, postgres: Any, pg: SqlDatabase, s3_server: Any, toxiproxy: Any
) -> None:
    table = _source_table(postgres, 8_000, blocks=4)
    bucket = Bucket(s3_server)
    source = _pg_rows(postgres, table)
    reference = snapshot(pg, table, bucket.store, "threads", 4)  # one process, threads
    proxy = toxiproxy.proxy(f"s3-dask-{uuid.uuid4().hex[:8]}", f"{s3_server.host}:{s3_server.port}")
    slow_store = bucket.store_at(f"http://{proxy.host}:{proxy.port}")
    run = snapshot.with_options(task_runner=DaskTaskRunner(address=cluster.address))
    seen: dict[str, Any] = {}

    def killer() -> None:
        """Once a worker is inside a part's write, SIGKILL that worker."""
        with Client(cluster.address) as client:
            names = cluster.worker_names()
            deadline = time.monotonic() + 300
            while "key" not in seen and time.monotonic() < deadline:
                found = _executing(client, "write_part")
                if found is not None:
                    seen["worker"], seen["key"] = found
                    seen["pid"] = cluster.kill_worker(int(names[found[0]].rsplit("-", 1)[1]))
                time.sleep(0.05)

    # Uploads at 120 KB/s: each ~0.5 MB part spends seconds in its PUT, so the kill lands
    # while a part is running; the scheduler's story below proves it did.
    with proxy.bandwidth(120, stream="upstream"):
        watcher = threading.Thread(target=killer, name="dask-killer")
        watcher.start()
        manifest = run(pg, table, slow_store, "dask", 4)
        watcher.join(60)
    assert "pid" in seen, "no part was seen running, so no worker was killed"
    with Client(cluster.address) as client:
        # (key, from, to, recommendations, stimulus, time) of each of the key's transitions
        story = client.run_on_scheduler(
            lambda dask_scheduler, key: [tuple(t) for t in dask_scheduler.story(key)],
            key=seen["key"],
        )
    # The killed worker's part went back to the scheduler from "processing" (the worker was
    # gone), then ran to "memory" on the other worker.
    interrupted = [t for t in story if t[1] == "processing" and t[2] != "memory"]
    assert interrupted, f"{seen['key']} was not interrupted on a worker: {story}"
    assert any(t[1] == "processing" and t[2] == "memory" for t in story), story
    assert _check_parts(bucket, "dask", manifest) == source  # every row once, nothing else
    assert [(p.rows, p.sha256) for p in manifest.parts] == [
        (p.rows, p.sha256) for p in reference.parts
    ]


# -- store copy sharded by listing pages and by prefix ------------------------------------------


@flow
def mirror(source: ObjectStore, target: ObjectStore, by: str) -> ShardedCopyResult:
    return copy_sharded(source, target, "raw", by=by, max_keys=5)


def test_sharded_copy_by_pages_and_by_prefix_on_dask_and_threads_every_object_once(
    cluster: DaskCluster, s3_server: Any
) -> None:
    source = Bucket(s3_server)
    objects = {f"raw/{d}/{i:03d}.bin": os.urandom(1000 + i) for d in "abc" for i in range(12)}
    objects.update({f"raw/top-{i}.bin": os.urandom(500) for i in range(3)})
    for key, body in objects.items():
        source.put(key, body)
    source.put("other/outside.bin", b"not under the prefix")
    shards = {"pages": 8, "prefix": 4}  # 39 keys in pages of 5; 3 sub-prefixes + 1 page
    for label, runner in _runners(cluster).items():
        for by, count in shards.items():
            target = Bucket(s3_server)
            result = mirror.with_options(task_runner=runner)(source.store, target.store, by)
            assert (result.shards, result.verified) == (count, "sha256"), (label, by)
            assert sorted(result.copied) == sorted(objects)  # each once (copy_sharded checks)
            assert target.keys("") == sorted(objects), (label, by)
            for key, body in objects.items():
                assert hashlib.sha256(target.get(key)).digest() == hashlib.sha256(body).digest()


# -- Kafka: N group members splitting the partitions -------------------------------------------


@flow
def drain(
    broker: KafkaConnection, topic: str, group: str, store: ObjectStore, prefix: str
) -> list[ConsumeToStoreResult]:
    futures = consume_to_store.map(
        broker,
        unmapped(topic),
        unmapped(group),
        unmapped(store),
        unmapped(prefix),
        member=[0, 1],
        members=unmapped(2),
        max_messages=unmapped(400),
    )
    return [f.result() for f in futures]


def _independent_read(bootstrap: str, topic: str) -> set[tuple[int, int, bytes]]:
    """(partition, offset, value) of every message, read by kafka-python without a group."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        parts = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic))]
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        ends = consumer.end_offsets(parts)
        out: set[tuple[int, int, bytes]] = set()
        while any(consumer.position(tp) < ends[tp] for tp in parts):
            for records in consumer.poll(timeout_ms=1000).values():
                out.update((r.partition, r.offset, r.value) for r in records)
        return out
    finally:
        consumer.close()


def test_kafka_two_members_on_dask_and_threads_split_partitions_every_message_once(
    cluster: DaskCluster, kafka: Any, s3_server: Any
) -> None:
    setup = KafkaConnection(bootstrap_servers=kafka.bootstrap_servers, client_id="dask-setup")
    topic = f"dask-{uuid.uuid4().hex[:8]}"
    create_topics.fn(setup, topic, partitions=4)
    produce.fn(setup, topic, [Record(b"v-%d" % i, key=b"k-%d" % i) for i in range(3000)])
    setup.close()
    produced = _independent_read(kafka.bootstrap_servers, topic)
    assert len(produced) == 3000
    bucket = Bucket(s3_server)
    for label, runner in _runners(cluster).items():
        broker = KafkaConnection(bootstrap_servers=kafka.bootstrap_servers, client_id=label)
        results = drain.with_options(task_runner=runner)(
            broker, topic, f"group-{label}-{uuid.uuid4().hex[:6]}", bucket.store, label
        )
        stored: list[tuple[int, int, bytes]] = []
        for member, result in enumerate(results):
            assert result.messages > 0
            for key in bucket.keys(f"{label}/"):
                if "_flowport_state" in key or f"-m{member}-" not in key:
                    continue
                table = pq.read_table(io.BytesIO(bucket.get(key)))
                rows = zip(
                    *(table.column(c).to_pylist() for c in ("partition", "offset", "value")),
                    strict=True,
                )
                batch = [(int(p), int(o), bytes(v)) for p, o, v in rows]
                # member i of 2 reads partitions i and i + 2 only
                assert {p % 2 for p, _, _ in batch} == {member}, key
                stored += batch
        assert len(stored) == len(set(stored)) == 3000, f"{label}: doubled or lost"
        assert set(stored) == produced, label
