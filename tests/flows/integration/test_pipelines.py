"""Connectors together in real Prefect flows, against real servers.

One flow moves rows PostgreSQL -> object store -> MariaDB and announces each batch on Kafka,
committing the consumed offsets only after the load; it runs unchanged on S3 and on GCS, only
the bucket block differs (the promise of the store connectors).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from prefect import flow

from flowport.store import ObjectStore
from flowport_gcs import GcpCredentials, GcsBucket, GcsStore
from flowport_kafka import KafkaConnection, commit, consume, create_topics, produce
from flowport_s3 import AwsCredentials, S3Bucket, S3Store
from flowport_sql import SqlDatabase, bulk_insert, execute, export_query, fetch_all, load_file

pytestmark = pytest.mark.usefixtures("prefect_server")

DDL = "CREATE TABLE {t} (id INTEGER PRIMARY KEY, name VARCHAR(100), score DOUBLE PRECISION)"
ROWS: list[dict[str, Any]] = [{"id": i, "name": f"name-{i}", "score": i / 7} for i in range(2_000)]


def _digest(rows: list[Any]) -> str:
    return hashlib.sha256(json.dumps(sorted(rows), default=str).encode()).hexdigest()


@pytest.fixture(params=["s3", "gcs"])
def store(request: pytest.FixtureRequest) -> Iterator[ObjectStore]:
    """An empty bucket on the S3 gateway or on the GCS emulator, as a flowport ObjectStore."""
    name = f"flows-{uuid.uuid4().hex[:12]}"
    if request.param == "s3":
        s3 = request.getfixturevalue("s3_server")
        s3.client().create_bucket(Bucket=name)
        creds = AwsCredentials(
            aws_access_key_id=s3.access_key,
            aws_secret_access_key=s3.secret_key,
            region_name=s3.region,
            endpoint_url=s3.endpoint_url,
            addressing_style="path",
        )
        yield S3Store(S3Bucket(bucket_name=name, credentials=creds))
    else:
        gcs = request.getfixturevalue("gcs_server")
        gcs.client().create_bucket(name)
        gcp = GcpCredentials(anonymous=True, endpoint=gcs.endpoint_url, project=gcs.project)
        yield GcsStore(GcsBucket(bucket=name, credentials=gcp))


def test_postgres_to_store_to_mariadb_with_kafka_commit_after_load(
    store: ObjectStore, postgres: Any, mariadb: Any, kafka: Any
) -> None:
    source = SqlDatabase(url=postgres.sqlalchemy_url)
    target = SqlDatabase(url=mariadb.sqlalchemy_url)
    broker = KafkaConnection(bootstrap_servers=kafka.bootstrap_servers)
    table = f"orders_{uuid.uuid4().hex[:8]}"
    topic, group = f"loads-{uuid.uuid4().hex[:8]}", f"loader-{uuid.uuid4().hex[:8]}"

    @flow
    def pipeline() -> tuple[int, int, int]:
        execute(source, DDL.format(t=table))
        execute(target, DDL.format(t=table))
        bulk_insert(source, table, ROWS)
        exported = export_query(source, f"SELECT id, name, score FROM {table}", store, "o.csv")
        create_topics(broker, topic)
        note = {"key": "o.csv", "rows": exported["rows"]}
        produce(broker, topic, [note], value_serializer="json")
        batch = consume(broker, topic, group, max_messages=10, value_deserializer="json")
        loaded = sum(load_file(target, store, m.value["key"], table) for m in batch.messages)
        commit(broker, batch)  # only after the load succeeded: at-least-once
        again = consume(broker, topic, group, max_messages=10, max_wait=2.0)
        return exported["rows"], loaded, len(again.messages)

    try:
        exported, loaded, redelivered = pipeline()
        assert (exported, loaded, redelivered) == (len(ROWS), len(ROWS), 0)
        got = fetch_all.fn(target, f"SELECT id, name, score FROM {table}", as_dicts=False)
        assert _digest([[r[0], r[1], round(r[2], 9)] for r in got]) == _digest(
            [[r["id"], r["name"], round(r["score"], 9)] for r in ROWS]
        )
    finally:
        for db in (source, target):
            execute.fn(db, f"DROP TABLE IF EXISTS {table}")
            db.dispose()
        broker.close()


# -- the demo pipeline ------------------------------------------------------------------------

OrderRow = tuple[int, str, str, Decimal, dt.datetime, int, int]


def _topic_latest(bootstrap: str, topic: str) -> dict[int, OrderRow]:
    """The newest version of each order on the topic, read with a raw kafka-python consumer
    (no group, no flowport): the last message of each key, which lives in one partition."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        ends = consumer.end_offsets(parts)
        messages = []
        while any(consumer.position(tp) < ends[tp] for tp in parts):
            for records in consumer.poll(timeout_ms=1000).values():
                messages += records
    finally:
        consumer.close(autocommit=False)
    latest: dict[int, OrderRow] = {}
    for m in sorted(messages, key=lambda m: (m.partition, m.offset)):
        v = json.loads(m.value)
        at = dt.datetime.fromisoformat(v["updated_at"])
        row = (v["order_id"], v["customer"], v["status"], Decimal(v["amount"]), at)
        latest[v["order_id"]] = (*row, m.partition, m.offset)
    return latest


def _committed_lag(bootstrap: str, topic: str, group: str) -> int:
    """End offsets minus the group's committed offsets (a raw kafka-python consumer that asks
    the group coordinator, never joining the group)."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    try:
        parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
        ends = consumer.end_offsets(parts)
        return sum(ends[tp] - (consumer.committed(tp) or 0) for tp in parts)
    finally:
        consumer.close(autocommit=False)


def _lake_files(s3: Any, gcs: Any, bucket: str, name: str) -> dict[str, list[pa.Table]]:
    """Each store's Parquet files, oldest first as its state object lists them, fetched with
    raw boto3 / google-cloud-storage clients and read by pyarrow; no other data file exists."""
    state_key = f"lake/orders/_flowport_state/{name}.json"
    client = s3.client()
    gcs_bucket = gcs.client().bucket(bucket)

    def s3_get(key: str) -> bytes:
        return bytes(client.get_object(Bucket=bucket, Key=key)["Body"].read())

    def gcs_get(key: str) -> bytes:
        return bytes(gcs_bucket.blob(key).download_as_bytes())

    listed = {
        "s3": [o["Key"] for o in client.list_objects_v2(Bucket=bucket)["Contents"]],
        "gcs": [b.name for b in gcs.client().list_blobs(bucket)],
    }
    out = {}
    for store, get in (("s3", s3_get), ("gcs", gcs_get)):
        files = json.loads(get(state_key))["files"]
        assert sorted(listed[store]) == sorted([*files, state_key]), store
        out[store] = [pq.read_table(io.BytesIO(get(key))) for key in files]
    return out


def test_demo_orders_pipeline_twice_second_run_moves_only_new_and_changed_rows(
    postgres: Any, kafka: Any, s3_server: Any, gcs_server: Any
) -> None:
    """The demo's flow (demo/flow.py) on the real servers, run twice: PostgreSQL ends equal to
    the topic's latest version per order (read raw), the group's offsets are all committed,
    the lake holds the first run's every order then only the second run's new and changed
    rows, the same on S3 and GCS, and the summary artifact states the PostgreSQL totals."""
    import psycopg
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    from demo.flow import connect, orders_pipeline

    env = {**postgres.env(), **kafka.env(), **s3_server.env(), **gcs_server.env()}
    lake = connect(env)
    try:
        first = orders_pipeline(lake, 1, 1, 3_000, 0, batch=1_000)
        state = orders_pipeline(lake, 2, 3_001, 400, 250, batch=1_000, return_state=True)
        second = state.result()
        run_id = state.state_details.flow_run_id
        assert run_id is not None
    finally:
        lake.close()

    assert (first.produced, first.upserted, first.batches) == (3_000, 3_000, 3)
    assert (second.produced, second.upserted, second.batches) == (650, 650, 1)
    assert first.moved == {"s3": 3_000, "gcs": 3_000}
    assert second.moved == {"s3": 650, "gcs": 650}  # incremental: not the 3,400 rows
    assert _committed_lag(kafka.bootstrap_servers, lake.topic, lake.group) == 0

    expected = _topic_latest(kafka.bootstrap_servers, lake.topic)
    with psycopg.connect(postgres.dsn) as conn:
        got = conn.execute(
            "SELECT order_id, customer, status, amount, updated_at, kafka_partition, "
            f"kafka_offset FROM {lake.table} ORDER BY order_id"
        ).fetchall()
        by_status = conn.execute(
            f"SELECT status, count(*), sum(amount) FROM {lake.table} GROUP BY status ORDER BY 1"
        ).fetchall()
    assert len(got) == 3_400
    assert got == [expected[k] for k in sorted(expected)]

    files = _lake_files(s3_server, gcs_server, lake.s3.bucket_name, lake.table)
    for store, tables in files.items():
        assert [t.num_rows for t in tables] == [3_000, 650], store
        run1, run2 = (t.sort_by("order_id") for t in tables)
        assert run1.column("order_id").to_pylist() == list(range(1, 3_001))
        changed = sorted(
            {*range(3_001, 3_401), *(k for k, v in expected.items() if v[2] != "placed")}
        )
        assert run2.column("order_id").to_pylist() == changed, store
        newest: dict[int, tuple[Any, ...]] = {}
        for row in pa.concat_tables([run1, run2]).to_pylist():
            newest[row["order_id"]] = (row["status"], row["amount"], row["updated_at"])
        assert newest == {k: (v[2], v[3], v[4]) for k, v in expected.items()}, store
    assert files["s3"][1].equals(files["gcs"][1]) and files["s3"][0].equals(files["gcs"][0])

    assert second.summary.stores_agree and (second.summary.files, second.summary.rows) == (2, 3_650)
    assert [tuple(r) for r in by_status] == second.summary.by_status
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run_id]))
        )
    (artifact,) = [a for a in artifacts if a.key == "flowport-demo-orders"]
    assert artifact.type == "markdown"
    assert "Orders after run 2" in str(artifact.data)
    for status, count, amount in by_status:
        assert f"| {status} | {count:,} | {amount:,.2f} |" in str(artifact.data)
