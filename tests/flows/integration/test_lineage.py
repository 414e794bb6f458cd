"""Lineage on real servers, read back from a real Prefect server's events API: SQL -> S3
(``export_query`` and ``run_transfer``) materializes the S3 key with the PostgreSQL table as
its upstream asset; S3 -> PostgreSQL the reverse; a table read by ``fetch_all`` is upstream of
what a later task materializes from its rows; Kafka topics with their offsets. No user name,
password or access secret appears in any asset event."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prefect import flow
from prefect.assets import materialize

from flowport.lineage import asset_key, file_uri
from flowport.store import ObjectStore
from flowport.transfer import StoreSink, StoreSource
from flowport.transfer_tasks import run_transfer
from flowport_gcs import GcpCredentials, GcsBucket
from flowport_gcs import tasks as gcs_tasks
from flowport_kafka import KafkaConnection, consume_to_store, create_topics, produce
from flowport_s3 import AwsCredentials, S3Bucket, S3Store
from flowport_s3 import tasks as s3_tasks
from flowport_sql import SqlDatabase, SqlQuerySource, SqlTableSink, execute, export_query, fetch_all
from flowport_sql import lineage as sql_lineage
from tests.core.unit.test_lineage import asset_events, related_assets

pytestmark = pytest.mark.usefixtures("prefect_server")

MATERIALIZED = "prefect.asset.materialization.succeeded"
PASSWORD = f"Lineage-Pw-{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="module")
def role(postgres: Any) -> str:
    """A PostgreSQL role with a password found nowhere else, to look for in the events."""
    name = f"lineage_{uuid.uuid4().hex[:8]}"
    admin = SqlDatabase(url=postgres.sqlalchemy_url)
    execute.fn(admin, f"CREATE ROLE {name} LOGIN SUPERUSER PASSWORD '{PASSWORD}'")
    admin.dispose()
    return name


@pytest.fixture
def pg(postgres: Any, role: str) -> Iterator[SqlDatabase]:
    url = f"postgresql+psycopg://{role}:{PASSWORD}@{postgres.host}:{postgres.port}/"
    db = SqlDatabase(url=url + postgres.database)
    yield db
    db.dispose()


@pytest.fixture
def s3_block(s3_server: Any) -> S3Bucket:
    name = f"lin-{uuid.uuid4().hex[:12]}"
    s3_server.client().create_bucket(Bucket=name)
    creds = AwsCredentials(
        aws_access_key_id=s3_server.access_key,
        aws_secret_access_key=s3_server.secret_key,
        region_name=s3_server.region,
        endpoint_url=s3_server.endpoint_url,
        addressing_style="path",
    )
    return S3Bucket(bucket_name=name, credentials=creds)


@pytest.fixture
def s3(s3_block: S3Bucket) -> tuple[str, ObjectStore]:
    return s3_block.bucket_name, S3Store(s3_block)


def _orders(db: SqlDatabase, rows: int = 250) -> str:
    table = f"orders_{uuid.uuid4().hex[:8]}"
    execute.fn(db, f"CREATE TABLE {table} (id bigint PRIMARY KEY, total numeric(10,2))")
    execute.fn(db, f"INSERT INTO {table} SELECT g, g * 1.5 FROM generate_series(1, {rows}) g")
    return table


def _table_key(postgres: Any, table: str) -> str:
    return f"postgresql://{postgres.host}:{postgres.port}/{postgres.database}/public.{table}"


def _one(events: list[dict[str, Any]], name: str) -> dict[str, Any]:
    (event,) = [e for e in events if e["event"] == name]
    return event


def _no_secrets(events: list[dict[str, Any]], role: str, s3_server: Any) -> None:
    text = json.dumps(events)
    for secret in (PASSWORD, role, s3_server.secret_key, s3_server.access_key):
        assert secret not in text


def test_export_query_to_s3_materializes_the_key_with_the_table_upstream(
    pg: SqlDatabase, postgres: Any, role: str, s3: tuple[str, ObjectStore], s3_server: Any
) -> None:
    bucket, store = s3
    table = _orders(pg)

    @flow
    def export() -> Any:
        return export_query(pg, f"SELECT id, total FROM {table} ORDER BY id", store, "o.csv")

    exported = export()
    (event,) = asset_events(f"s3://{bucket}/o.csv")
    assert event["event"] == "prefect.asset.materialization.succeeded"
    assert related_assets(event) == {_table_key(postgres, table)}
    assert event["payload"]["rows"] == 250 == exported.rows
    assert event["payload"]["bytes"] == exported.size == len(store.get_bytes("o.csv"))
    (referenced,) = asset_events(_table_key(postgres, table))
    assert referenced["event"] == "prefect.asset.referenced"
    _no_secrets([event, referenced], role, s3_server)


def test_a_statement_materializes_its_target_with_the_tables_it_reads(
    pg: SqlDatabase, postgres: Any, role: str, s3_server: Any
) -> None:
    orders = _orders(pg, 20)
    totals = f"totals_{uuid.uuid4().hex[:8]}"
    execute.fn(pg, f"CREATE TABLE {totals} (id bigint, total numeric(10,2))")

    @flow
    def aggregate() -> int:
        return execute(pg, f"INSERT INTO {totals} SELECT id, total FROM {orders} WHERE id > 5")

    assert aggregate() == 15
    (event,) = asset_events(_table_key(postgres, totals))
    assert event["event"] == "prefect.asset.materialization.succeeded"
    assert related_assets(event) == {_table_key(postgres, orders)}
    assert event["payload"]["rows"] == 15
    _no_secrets([event], role, s3_server)


def test_run_transfer_sql_to_s3_materializes_the_prefix_each_run(
    pg: SqlDatabase, postgres: Any, role: str, s3: tuple[str, ObjectStore], s3_server: Any
) -> None:
    bucket, store = s3
    table = _orders(pg, 100)

    @flow
    def move() -> Any:
        source = SqlQuerySource(pg, table=table, cursor="id")
        return run_transfer(source, StoreSink(store, "lake/orders"), "orders")

    first = move()
    execute.fn(pg, f"INSERT INTO {table} SELECT g, 1 FROM generate_series(101, 130) g")
    second = move()
    events = asset_events(f"s3://{bucket}/lake/orders", count=2)
    assert [e["event"] for e in events] == ["prefect.asset.materialization.succeeded"] * 2
    assert [related_assets(e) for e in events] == [{_table_key(postgres, table)}] * 2
    assert [e["payload"]["rows"] for e in events] == [first.rows, second.rows] == [100, 30]
    assert [e["payload"]["to"] for e in events] == ["100", "130"]
    _no_secrets(events, role, s3_server)


def test_run_transfer_s3_to_postgres_materializes_the_table_with_the_objects_upstream(
    pg: SqlDatabase, postgres: Any, role: str, s3: tuple[str, ObjectStore], s3_server: Any
) -> None:
    bucket, store = s3
    table = _orders(pg, 40)
    target = f"copy_{uuid.uuid4().hex[:8]}"

    @flow
    def round_trip() -> Any:
        run_transfer(SqlQuerySource(pg, table=table), StoreSink(store, "in"), "seed")
        return run_transfer(StoreSource(store, "in"), SqlTableSink(pg, target), "load")

    loaded = round_trip()
    (event,) = asset_events(_table_key(postgres, target))
    assert event["event"] == "prefect.asset.materialization.succeeded"
    assert related_assets(event) == {f"s3://{bucket}/in"}
    assert event["payload"]["rows"] == 40 == loaded.rows
    assert fetch_all.fn(pg, f"SELECT count(*) AS n FROM {target}")[0]["n"] == 40
    _no_secrets([event], role, s3_server)


def test_a_table_read_by_fetch_all_is_upstream_of_what_a_later_task_materializes(
    pg: SqlDatabase, postgres: Any, role: str, s3: tuple[str, ObjectStore], s3_server: Any
) -> None:
    bucket, store = s3
    table = _orders(pg, 10)
    report = f"s3://{bucket}/reports/total.txt"

    @materialize(report)
    def write_total(rows: list[dict[str, Any]]) -> None:
        store.put_bytes(str(sum(r["total"] for r in rows)).encode(), "reports/total.txt")

    @flow
    def totals() -> None:
        write_total(fetch_all(pg, f"SELECT total FROM {table}"))

    totals()
    (event,) = asset_events(report)
    assert event["event"] == "prefect.asset.materialization.succeeded"
    assert related_assets(event) == {_table_key(postgres, table)}
    assert store.get_bytes("reports/total.txt") == b"82.50"
    _no_secrets([event], role, s3_server)


def test_kafka_produce_and_consume_to_store_report_topics_and_offsets(
    kafka: Any, s3: tuple[str, ObjectStore]
) -> None:
    bucket, store = s3
    topic = f"lineage-{uuid.uuid4().hex[:8]}"
    connection = KafkaConnection(bootstrap_servers=kafka.bootstrap_servers)
    create_topics.fn(connection, topic, partitions=2)

    @flow
    def stream() -> Any:
        produce(connection, topic, [f"m{i}".encode() for i in range(20)])
        return consume_to_store(connection, topic, f"g-{topic}", store, prefix="raw")

    moved = stream()
    topic_key = asset_key(f"kafka://{kafka.bootstrap_servers}/{topic}")
    # The topic is materialized by produce and referenced by consume_to_store: two events,
    # which reach the server in either order.
    events = asset_events(topic_key, count=2)
    assert sorted(e["event"] for e in events) == [MATERIALIZED, "prefect.asset.referenced"]
    produced = _one(events, MATERIALIZED)
    assert produced["payload"]["messages"] == 20
    (landed,) = asset_events(f"s3://{bucket}/raw")
    assert landed["event"] == "prefect.asset.materialization.succeeded"
    assert related_assets(landed) == {topic_key}
    assert landed["payload"]["messages"] == 20 == moved.messages
    offsets = {f"{t}/{p}": o for (t, p), o in moved.committed.items()}
    assert landed["payload"]["offsets"] == offsets and sum(offsets.values()) == 20


def test_object_tasks_report_objects_and_local_files(
    s3_block: S3Bucket, gcs_server: Any, s3_server: Any, tmp_path: Path
) -> None:
    bucket = s3_block.bucket_name
    src = tmp_path / "a file #1.bin"  # characters Prefect refuses in keys
    src.write_bytes(b"x" * 1000)
    back = tmp_path / "back.bin"
    gcs_name = f"lin-{uuid.uuid4().hex[:12]}"
    gcs_server.client().create_bucket(gcs_name)
    gcs_block = GcsBucket(
        bucket=gcs_name,
        credentials=GcpCredentials(
            anonymous=True, endpoint=gcs_server.endpoint_url, project=gcs_server.project
        ),
    )

    @flow
    def objects() -> None:
        s3_tasks.upload_file(s3_block, src, "in/a.bin")
        s3_tasks.copy_object(s3_block, "in/a.bin", "out/a.bin")
        s3_tasks.download_file(s3_block, "out/a.bin", back)
        gcs_tasks.upload_bytes(gcs_block, b"y" * 10, "g/b.bin")

    objects()
    local = asset_key(file_uri(src))
    assert local.startswith(f"file://{tmp_path.resolve()}/a_file__1.bin~")
    uploaded = _one(asset_events(f"s3://{bucket}/in/a.bin", count=2), MATERIALIZED)
    assert related_assets(uploaded) == {local} and uploaded["payload"]["bytes"] == 1000
    copied = _one(asset_events(f"s3://{bucket}/out/a.bin", count=2), MATERIALIZED)
    assert related_assets(copied) == {f"s3://{bucket}/in/a.bin"}
    (downloaded,) = asset_events(asset_key(file_uri(back)))
    assert downloaded["event"] == MATERIALIZED
    assert related_assets(downloaded) == {f"s3://{bucket}/out/a.bin"}
    assert downloaded["payload"] == {} and back.read_bytes() == src.read_bytes()
    (gcs,) = asset_events(f"gs://{gcs_name}/g/b.bin")
    assert gcs["event"] == MATERIALIZED and gcs["payload"]["bytes"] == 10
    _no_secrets([uploaded, copied, downloaded, gcs], "no-role", s3_server)


@pytest.mark.parametrize(
    ("sql", "reads", "writes"),
    [
        (
            "SELECT * FROM orders o JOIN sales.customers c ON o.c = c.id",
            ["orders", "sales.customers"],
            [],
        ),
        ("SELECT extract(year FROM ts), substring(name FROM 2) FROM orders", ["orders"], []),
        ("WITH recent AS (SELECT * FROM orders) SELECT * FROM recent", ["orders"], []),
        ("INSERT INTO agg SELECT id FROM orders", ["orders"], ["agg"]),
        (
            "UPDATE orders SET total = 0 WHERE id IN (SELECT id FROM refunds)",
            ["refunds"],
            ["orders"],
        ),
        ('DELETE FROM "Odd Name"', [], ['"Odd Name"']),
    ],
)
def test_sql_tables_come_from_parsing_the_statement(
    sql: str, reads: list[str], writes: list[str]
) -> None:
    db = SqlDatabase(url=f"postgresql+psycopg://alice:{PASSWORD}@db.example:5432/shop")

    def key(name: str) -> str:
        schema, _, table = name.strip('"').rpartition(".")
        return f"postgresql://db.example:5432/shop/{schema or 'public'}.{table}"

    assert sql_lineage.tables(db, sql) == ([key(t) for t in reads], [key(t) for t in writes])


def test_sql_that_cannot_be_parsed_reads_the_whole_database() -> None:
    db = SqlDatabase(url=f"postgresql+psycopg://alice:{PASSWORD}@db.example:5432/shop")
    assert sql_lineage.tables(db, "VACUUM (((") is None
    assert sql_lineage.query_reads(db, "VACUUM (((") == ["postgresql://db.example:5432/shop"]
    lite = SqlDatabase(url="sqlite:////data/x.db")
    assert sql_lineage.query_reads(lite, "SELECT * FROM t") == ["sqlite:///data/x.db/t"]
