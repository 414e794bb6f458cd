"""SQL transfers on the real servers: PostgreSQL -> Parquet on S3 (incremental by
``updated_at``), Parquet on S3 -> MariaDB (upsert), PostgreSQL -> MariaDB direct, a SIGKILL of
the sink server in the middle of a load, and bad input (a type Arrow cannot hold, schema
drift between runs).

Every result is checked by an independent reader against the source, row by row: Parquet
files fetched with a raw boto3 client and read by pyarrow; MariaDB read with PyMySQL.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
import pymysql
import pytest
from prefect import flow

from flowport.errors import FlowportError, InvalidInput
from flowport.retry import RetryPolicy
from flowport.store import ObjectStore
from flowport.transfer import Extract, StoreSink, StoreSource, TransferResult
from flowport.transfer_tasks import run_transfer
from flowport_s3 import AwsCredentials, S3Bucket, S3Store
from flowport_sql import SqlDatabase, SqlQuerySource, SqlTableSink, execute, fetch_all
from flowport_testing.services import MariaDB, Postgres
from flowport_testing.services.base import wait_until

pytestmark = pytest.mark.usefixtures("prefect_server")

Row = tuple[Any, ...]
COLUMNS = ("id", "updated_at", "amount", "name", "payload")
T0 = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)


@flow
def move(source: Any, sink: Any, name: str) -> TransferResult:
    return run_transfer(source, sink, name)


# -- fixtures --------------------------------------------------------------------------------


@pytest.fixture
def pg(postgres: Any) -> Iterator[SqlDatabase]:
    db = SqlDatabase(url=postgres.sqlalchemy_url)
    yield db
    db.dispose()


@pytest.fixture
def maria(mariadb: Any) -> Iterator[SqlDatabase]:
    db = SqlDatabase(url=mariadb.sqlalchemy_url)
    yield db
    db.dispose()


class Bucket:
    """A fresh bucket on the S3 gateway: a flowport store, and raw boto3 reads for checks."""

    def __init__(self, s3: Any) -> None:
        self.s3 = s3
        self.name = f"sqlt-{uuid.uuid4().hex[:12]}"
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
        pages = (
            self.s3.client()
            .get_paginator("list_objects_v2")
            .paginate(Bucket=self.name, Prefix=prefix)
        )
        return sorted(o["Key"] for page in pages for o in page.get("Contents", []))

    def get(self, key: str) -> bytes:
        return bytes(self.s3.client().get_object(Bucket=self.name, Key=key)["Body"].read())

    def committed(self, prefix: str, name: str) -> list[str]:
        """The data files the state object names (read raw, not through flowport)."""
        state = json.loads(self.get(f"{prefix}/_flowport_state/{name}.json"))
        return list(state["files"])

    def table(self, key: str) -> pa.Table:
        return pq.read_table(io.BytesIO(self.get(key)))


@pytest.fixture
def bucket(s3_server: Any) -> Bucket:
    return Bucket(s3_server)


def _source_table(db: SqlDatabase, rows: int) -> str:
    """A PostgreSQL table of ``rows`` rows whose ``updated_at`` repeats in runs of 7 (so
    batches meet runs of equal cursor values), with NULLs, decimals and bytes."""
    name = f"src_{uuid.uuid4().hex[:10]}"
    execute.fn(
        db,
        f"CREATE TABLE {name} (id bigint PRIMARY KEY, updated_at timestamptz NOT NULL, "
        "amount numeric(14,2), name text, payload bytea)",
    )
    _insert(db, name, 1, rows)
    return name


def _insert(db: SqlDatabase, table: str, first: int, last: int, day: int = 0) -> None:
    """Rows ``first``..``last``; ``day`` days later than the first rows (an incremental cursor
    needs new rows to come after the mark, as ``now()`` would)."""
    execute.fn(
        db,
        f"INSERT INTO {table} SELECT g, timestamptz '2024-01-01 00:00:00+00' + (g / 7) * "
        f"interval '1 second' + interval '{day} day', "
        "CASE WHEN g % 11 = 0 THEN NULL ELSE g * 1.25 END, "
        "CASE WHEN g % 13 = 0 THEN NULL ELSE repeat('x', (g % 50)::int) || 'é' || g END, "
        "CASE WHEN g % 17 = 0 THEN NULL ELSE decode(lpad(to_hex(g), 8, '0'), 'hex') END "
        "FROM generate_series(CAST(:a AS bigint), CAST(:b AS bigint)) g",
        {"a": first, "b": last},
    )


def _update(db: SqlDatabase, table: str, every: int, shift_days: int = 1) -> int:
    return execute.fn(
        db,
        f"UPDATE {table} SET name = 'updated-' || id, amount = amount + 1, "
        f"updated_at = updated_at + interval '{shift_days} day' WHERE id % {every} = 0",
    )


def _norm(row: Row) -> Row:
    """A row with timestamps as naive UTC and bytes as bytes, for comparisons."""
    out = []
    for value in row:
        if isinstance(value, dt.datetime) and value.tzinfo is not None:
            value = value.astimezone(dt.timezone.utc).replace(tzinfo=None)
        if isinstance(value, memoryview | bytearray):
            value = bytes(value)
        out.append(value)
    return tuple(out)


def _pg_rows(db: SqlDatabase, table: str) -> list[Row]:
    rows = fetch_all.fn(db, f"SELECT {', '.join(COLUMNS)} FROM {table} ORDER BY id", as_dicts=False)
    return [_norm(r) for r in rows]


def _maria_rows(server: Any, table: str) -> list[Row]:
    """All rows of ``table`` read by plain PyMySQL (not flowport), in id order, duplicates
    kept."""
    conn = pymysql.connect(
        host=server.host,
        port=server.port,
        user=server.user,
        password=server.password,
        database=server.database,
    )
    try:
        with conn.cursor() as cur:
            cur.execute(f"SELECT {', '.join(COLUMNS)} FROM {table} ORDER BY id")
            return [_norm(r) for r in cur.fetchall()]
    finally:
        conn.close()


def _parquet_rows(bucket: Bucket, prefix: str, name: str) -> list[Row]:
    """Latest version of each id over every committed file, in id order; asserts that no
    file holds an id twice and that later files only hold newer versions."""
    latest: dict[int, Row] = {}
    for key in bucket.committed(prefix, name):
        table = bucket.table(key)
        assert table.schema.field("amount").type == pa.decimal128(14, 2)
        assert table.schema.field("updated_at").type == pa.timestamp("us", tz="UTC")
        ids = table.column("id").to_pylist()
        assert len(ids) == len(set(ids)), f"{key} holds an id twice"
        for row in zip(*(table.column(c).to_pylist() for c in COLUMNS), strict=True):
            old = latest.get(row[0])
            assert old is None or old[1] < _norm(row)[1], "a file repeats an unchanged row"
            latest[row[0]] = _norm(row)
    return [latest[k] for k in sorted(latest)]


# -- PostgreSQL -> Parquet on S3 -> MariaDB ---------------------------------------------------


def test_postgres_to_parquet_on_s3_incremental_twice_then_parquet_to_mariadb_upsert(
    pg: SqlDatabase, maria: SqlDatabase, mariadb: Any, bucket: Bucket
) -> None:
    table = _source_table(pg, 5_000)
    source = SqlQuerySource(pg, table=table, cursor="updated_at", batch_rows=1_000)
    sink = StoreSink(bucket.store, "orders", max_file_rows=2_000)

    first = move(source, sink, "orders")
    assert first.rows == 5_000 and len(first.written) == 3
    assert first.source.endswith(f"/flowport/{table}") and "flowport:" not in first.source
    assert _parquet_rows(bucket, "orders", "orders") == _pg_rows(pg, table)

    updated = _update(pg, table, every=10)
    _insert(pg, table, 5_001, 5_500, day=2)
    second = move(source, sink, "orders")
    assert second.rows == updated + 500
    assert second.lower == first.upper
    assert _parquet_rows(bucket, "orders", "orders") == _pg_rows(pg, table)

    nothing = move(source, sink, "orders")
    assert nothing.rows == 0 and nothing.upper == second.upper

    # Parquet on S3 -> MariaDB, upsert by id, the first run's files then the second's (the
    # runs' file names are hashes, so key order is not run order: see the README).
    target = f"dst_{uuid.uuid4().hex[:10]}"
    into = SqlTableSink(maria, target, mode="upsert", key=["id"])
    files = bucket.committed("orders", "orders")
    runs = [
        [k for k in files if k.startswith(f"orders/orders-{label}-")]
        for label in (files[0].split("-")[1], files[-1].split("-")[1])
    ]
    assert [len(r) for r in runs] == [3, 1]
    loaded = 0
    for n, keys in enumerate(runs):
        # state names are per database: the target in the name keeps reruns on reused servers apart
        loaded += move(StoreSource(bucket.store, keys=keys), into, f"{target}-{n}").rows
        assert into.state(f"{target}-{n}") == keys[-1]
    assert loaded == 5_500 + updated
    assert _maria_rows(mariadb, target) == _pg_rows(pg, table)
    again = move(StoreSource(bucket.store, keys=runs[1]), into, f"{target}-1")
    assert again.rows == 0
    assert _maria_rows(mariadb, target) == _pg_rows(pg, table)


def test_postgres_to_mariadb_direct_upsert_incremental(
    pg: SqlDatabase, maria: SqlDatabase, mariadb: Any
) -> None:
    table = _source_table(pg, 3_000)
    target = f"dst_{uuid.uuid4().hex[:10]}"
    source = SqlQuerySource(pg, table=table, cursor="updated_at", batch_rows=500)
    sink = SqlTableSink(maria, target, mode="upsert", key=["id"], commit_rows=700)
    assert move(source, sink, f"{target}-direct").rows == 3_000
    assert _maria_rows(mariadb, target) == _pg_rows(pg, table)
    mark = sink.state(f"{target}-direct")
    assert mark == max(r[1] for r in _pg_rows(pg, table)).replace(tzinfo=dt.timezone.utc)

    updated = _update(pg, table, every=7)
    assert move(source, sink, f"{target}-direct").rows == updated
    assert _maria_rows(mariadb, target) == _pg_rows(pg, table)


def test_query_source_to_mariadb_replace(pg: SqlDatabase, maria: SqlDatabase, mariadb: Any) -> None:
    table = _source_table(pg, 1_000)
    target = f"dst_{uuid.uuid4().hex[:10]}"
    source = SqlQuerySource(
        pg, query=f"SELECT * FROM {table} WHERE id <= :top", params={"top": 600}
    )
    assert "?query=" in source.uri and "flowport:" not in source.uri
    sink = SqlTableSink(maria, target, mode="replace")
    assert move(source, sink, "replace").rows == 600
    assert move(source, sink, "replace").rows == 600  # replaced, not appended
    assert _maria_rows(mariadb, target) == _pg_rows(pg, table)[:600]


# -- SIGKILL of the sink server mid-load ------------------------------------------------------


@pytest.fixture(params=["mariadb", "postgresql"])
def own_sink(request: pytest.FixtureRequest) -> Iterator[MariaDB | Postgres]:
    """A sink server of this test's own (killed and restarted; other tests keep theirs):
    MariaDB (SQLAlchemy executemany) and PostgreSQL (ADBC ingest on one connection)."""
    server = MariaDB() if request.param == "mariadb" else Postgres()
    try:
        server.start()
        yield server
    finally:
        server.save_log()
        server.close()


def _sink_rows(server: MariaDB | Postgres, table: str) -> list[Row]:
    """Every row of ``table`` read by the server's plain driver (not flowport), duplicates kept."""
    if isinstance(server, MariaDB):
        return _maria_rows(server, table)
    with psycopg.connect(server.dsn) as conn:
        rows = conn.execute(f"SELECT {', '.join(COLUMNS)} FROM {table} ORDER BY id").fetchall()
    return [_norm(r) for r in rows]


def test_sigkill_sink_mid_load_then_rerun_loses_and_duplicates_nothing(
    pg: SqlDatabase, own_sink: MariaDB | Postgres
) -> None:
    table = _source_table(pg, 200_000)
    target = f"dst_{uuid.uuid4().hex[:10]}"
    sink_db = SqlDatabase(url=own_sink.sqlalchemy_url)
    source = SqlQuerySource(pg, table=table, cursor="updated_at", batch_rows=5_000)
    # append: no key on the target, so a duplicated row would stay visible.
    sink = SqlTableSink(
        sink_db,
        target,
        mode="append",
        commit_rows=5_000,
        retry_policy=RetryPolicy(attempts=3, initial_delay=0.1, max_delay=0.2, deadline=2.0),
    )
    failure: list[BaseException] = []

    def first_run() -> None:
        try:
            move(source, sink, f"{target}-crash")
        except BaseException as exc:  # the flow fails: that is the point
            failure.append(exc)

    runner = threading.Thread(target=first_run)
    runner.start()
    wait_until(
        lambda: sink.state(f"{target}-crash") is not None or not runner.is_alive(),
        timeout=300,
        what="a first part committed",
    )
    assert runner.is_alive(), "the load finished before the kill; nothing was tested"
    own_sink.kill()
    runner.join(timeout=300)
    assert not runner.is_alive()
    assert failure and isinstance(failure[0], FlowportError), failure
    own_sink.restart()
    sink_db.dispose()

    mark = sink.state(f"{target}-crash")
    committed = _sink_rows(own_sink, target)
    assert 0 < len(committed) < 200_000
    # What is committed is exactly the rows up to the mark: a part never ends inside a run
    # of equal cursor values, and the mark moved with each part's rows.
    expected = _pg_rows(pg, table)
    upto = [r for r in expected if r[1] <= mark.astimezone(dt.timezone.utc).replace(tzinfo=None)]
    assert sorted(committed) == upto

    rerun = move(source, sink, f"{target}-crash")
    assert rerun.lower == mark
    assert rerun.rows == 200_000 - len(committed)
    after = _sink_rows(own_sink, target)
    assert len(after) == len({r[0] for r in after}) == 200_000
    assert after == expected
    sink_db.dispose()


def test_files_to_postgres_stream_in_one_transaction_a_corrupt_file_leaves_nothing(
    pg: SqlDatabase, bucket: Bucket, postgres: Any
) -> None:
    """Store -> PostgreSQL without a cursor: one streamed transaction (memory: a batch). A
    corrupt file after good ones fails it naming the object; nothing is visible and the mark
    has not moved; once the file is fixed, the rerun loads every row exactly once."""
    table = _source_table(pg, 30_000)
    lake = StoreSink(bucket.store, "lake", max_file_rows=10_000)
    assert move(SqlQuerySource(pg, table=table), lake, "lake").rows == 30_000
    files = bucket.committed("lake", "lake")
    assert len(files) == 3
    bad = "lake/zz-corrupt.parquet"
    bucket.store.put_bytes(b"PAR1 this is not a parquet file PAR1", bad)
    target = f"dst_{uuid.uuid4().hex[:10]}"
    source = StoreSource(bucket.store, "lake", format="parquet", batch_rows=4_000)
    sink = SqlTableSink(pg, target, mode="append")
    with pytest.raises(InvalidInput, match="zz-corrupt") as info:
        move(source, sink, "files")
    assert not info.value.transient
    assert _sink_rows(postgres, target) == []
    assert sink.state("files") is None

    bucket.store.delete_many([bad])
    assert move(source, sink, "files").rows == 30_000
    assert _sink_rows(postgres, target) == _pg_rows(pg, table)
    assert sink.state("files") == files[-1]
    assert move(source, sink, "files").rows == 0  # nothing new: not appended again
    assert len(_sink_rows(postgres, target)) == 30_000


# -- bad input --------------------------------------------------------------------------------


def test_type_without_arrow_form_names_the_column_and_writes_nothing(
    pg: SqlDatabase, bucket: Bucket
) -> None:
    table = f"tsv_{uuid.uuid4().hex[:10]}"
    execute.fn(pg, f"CREATE TABLE {table} (id int PRIMARY KEY, doc tsvector, at timestamptz)")
    execute.fn(pg, f"INSERT INTO {table} VALUES (1, 'a b', now()), (2, 'c', now())")
    source = SqlQuerySource(pg, table=table, cursor="id")
    with pytest.raises(InvalidInput, match="'doc'") as info:
        move(source, StoreSink(bucket.store, "tsv"), "tsv")
    assert "tsvector" in str(info.value).lower() and "Arrow" in str(info.value)
    assert bucket.keys("tsv") == []
    # Cast in the query and it goes through.
    cast = SqlQuerySource(pg, query=f"SELECT id, doc::text AS doc FROM {table}", cursor="id")
    assert move(cast, StoreSink(bucket.store, "tsv"), "tsv").rows == 2


def test_schema_drift_between_runs_names_the_column_and_writes_nothing(
    pg: SqlDatabase, maria: SqlDatabase, mariadb: Any
) -> None:
    table = _source_table(pg, 800)
    target = f"dst_{uuid.uuid4().hex[:10]}"
    source = SqlQuerySource(pg, table=table, cursor="updated_at", batch_rows=200)
    sink = SqlTableSink(maria, target, mode="upsert", key=["id"], commit_rows=200)
    assert move(source, sink, f"{target}-drift").rows == 800
    before, mark = _maria_rows(mariadb, target), sink.state(f"{target}-drift")

    execute.fn(pg, f"ALTER TABLE {table} ADD COLUMN discount numeric(5,2)")
    _update(pg, table, every=5)
    with pytest.raises(InvalidInput, match="'discount'") as info:
        move(source, sink, f"{target}-drift")
    assert "schema drift" in str(info.value)
    assert _maria_rows(mariadb, target) == before
    assert sink.state(f"{target}-drift") == mark
    rows = fetch_all.fn(maria, f"SELECT count(*) AS n FROM {target}")
    assert rows == [{"n": 800}]


def test_source_and_sink_pickle_without_engines(pg: SqlDatabase, maria: SqlDatabase) -> None:
    import pickle

    source = SqlQuerySource(pg, table="t", cursor="id")
    sink = SqlTableSink(maria, "t", mode="upsert", key="id")
    pg.engine()  # an engine exists; it must not travel
    copy = pickle.loads(pickle.dumps(source))
    assert copy.uri == source.uri and copy.cursor == "id"
    assert pickle.loads(pickle.dumps(sink)).key == ["id"]


@pytest.mark.parametrize("mode", ["upsert", "append"])
def test_extracts_without_a_mark_are_each_loaded(pg: SqlDatabase, mode: str) -> None:
    """A source with no cursor bound (Kafka batches): a later load is new data, never taken for
    the last one committed again (that skipped it while the source still committed offsets)."""
    target = f"dst_{uuid.uuid4().hex[:10]}"
    sink = SqlTableSink(pg, target, mode=mode, key=["id"] if mode == "upsert" else None)
    loads = [[1, 2], [3, 4], [5]]
    for ids in loads:
        batch = pa.record_batch({"id": ids, "v": [f"v{i}" for i in ids]})
        assert sink.load(Extract(batches=[batch]), f"{target}-marks").rows == len(ids)
    got = fetch_all.fn(pg, f"SELECT id, v FROM {target} ORDER BY id", as_dicts=False)
    assert [tuple(r) for r in got] == [(i, f"v{i}") for i in range(1, 6)]


def test_a_replayed_labelled_batch_is_not_appended_twice(pg: SqlDatabase) -> None:
    """Kafka extracts carry a label (their offset ranges): a batch loaded, then replayed because
    the offsets were never committed, is recognised; the next batch still loads."""
    target = f"dst_{uuid.uuid4().hex[:10]}"
    sink = SqlTableSink(pg, target, mode="append")
    first = pa.record_batch({"id": [1, 2], "v": ["a", "b"]})
    second = pa.record_batch({"id": [3], "v": ["c"]})
    name = f"{target}-kafka"
    assert sink.load(Extract(batches=[first], label="orders-p0-0-1"), name).rows == 2
    assert sink.load(Extract(batches=[first], label="orders-p0-0-1"), name).rows == 0
    assert sink.load(Extract(batches=[second], label="orders-p0-2-2"), name).rows == 1
    got = fetch_all.fn(pg, f"SELECT id, v FROM {target} ORDER BY id", as_dicts=False)
    assert [tuple(r) for r in got] == [(1, "a"), (2, "b"), (3, "c")]


def test_columns_loads_only_those_and_names_one_the_data_lacks(pg: SqlDatabase) -> None:
    """``columns=`` drops what has no SQL column type (Kafka's headers: a list of structs)."""
    target = f"dst_{uuid.uuid4().hex[:10]}"
    headers = [[{"key": "trace", "value": b"\x00\x01"}], []]
    batch = pa.record_batch({"id": [1, 2], "v": ["a", "b"], "headers": headers})
    assert pa.types.is_list(batch.schema.field("headers").type)
    sink = SqlTableSink(pg, target, mode="append", columns=["id", "v"])
    assert sink.load(Extract(batches=[batch], label="p0-0-1"), f"{target}-cols").rows == 2
    got = fetch_all.fn(pg, f"SELECT * FROM {target} ORDER BY id", as_dicts=True)
    assert got == [{"id": 1, "v": "a"}, {"id": 2, "v": "b"}]

    wrong = SqlTableSink(pg, target, mode="append", columns=["id", "nope"])
    with pytest.raises(InvalidInput, match="'nope'") as info:
        wrong.load(Extract(batches=[batch], label="p0-2-3"), f"{target}-cols")
    assert not info.value.transient
    assert fetch_all.fn(pg, f"SELECT count(*) AS n FROM {target}") == [{"n": 2}]
    assert sink.state(f"{target}-cols") == "p0-0-1"
