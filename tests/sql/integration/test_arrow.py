"""SQL as Arrow on the real servers (PostgreSQL, MariaDB) and SQLite: ``stream_query(format=
"arrow")``, ``export_query`` / ``load_file`` with ``format="parquet"`` and ``bulk_insert`` of
Arrow data, with every bad input.

Source rows are written and results read back through a separate plain SQLAlchemy engine
(the drivers' own values), and Parquet files are read by pyarrow from the file itself; none
of it goes through flowport.
"""

from __future__ import annotations

import datetime as dt
import decimal
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sqlalchemy import Engine, MetaData, Table, create_engine, insert, select, text

from flowport import LocalStore
from flowport.errors import FlowportError, InvalidInput, is_permanent
from flowport_sql import SqlDatabase, bulk_insert, export_query, load_file, stream_query
from flowport_sql.arrow import _sa_stream, insert_arrow
from flowport_sql.tasks import bulk_insert as bulk_insert_task

COLUMNS = ["id", "amount", "note", "data", "ts"]
BIG_TEXT = "é" * (512 * 1024)  # 1 MiB of UTF-8
BIG_BYTES = bytes(range(256)) * 4096  # 1 MiB


@dataclass
class Backend:
    """One database: its URL, DDL for the test table and the Arrow types expected back."""

    name: str
    url: str
    ddl: str
    tz: bool  # whether the timestamp column keeps a time zone

    @property
    def ts_type(self) -> pa.DataType:
        return pa.timestamp("us", tz="UTC") if self.tz else pa.timestamp("us")


DDL = {
    "postgres": "CREATE TABLE {t} (id BIGINT NOT NULL, amount NUMERIC(18,4), note TEXT, "
    "data BYTEA, ts TIMESTAMPTZ)",
    "mariadb": "CREATE TABLE {t} (id BIGINT NOT NULL, amount DECIMAL(18,4), note LONGTEXT, "
    "data LONGBLOB, ts DATETIME(6) NULL)",
    "sqlite": "CREATE TABLE {t} (id BIGINT NOT NULL, amount NUMERIC(18,4), note TEXT, "
    "data BLOB, ts TIMESTAMP)",
}


@pytest.fixture(params=["postgres", "mariadb", "sqlite"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'arrow.db'}"
    else:
        url = request.getfixturevalue(request.param).sqlalchemy_url
    return Backend(request.param, url, DDL[request.param], tz=request.param == "postgres")


@pytest.fixture
def db(backend: Backend) -> Iterator[SqlDatabase]:
    database = SqlDatabase(url=backend.url)
    yield database
    database.dispose()


@pytest.fixture
def raw(backend: Backend) -> Iterator[Engine]:
    """A plain SQLAlchemy engine, not flowport's: the independent writer and reader."""
    engine = create_engine(backend.url)
    yield engine
    engine.dispose()


@pytest.fixture
def make_table(backend: Backend, raw: Engine) -> Iterator[Callable[[], str]]:
    made: list[str] = []

    def make() -> str:
        name = f"a_{uuid.uuid4().hex[:10]}"
        with raw.begin() as conn:
            conn.exec_driver_sql(backend.ddl.format(t=name))
        made.append(name)
        return name

    yield make
    with raw.begin() as conn:
        for name in made:
            conn.exec_driver_sql(f"DROP TABLE IF EXISTS {name}")


def source_rows(backend: Backend) -> list[dict[str, Any]]:
    """Three rows NULL in every column but id (so a first batch of two is all NULL), then
    decimals at full precision, time stamps, and 1 MiB of text and of bytes."""
    tz = dt.timezone.utc if backend.tz else None
    # SQLite keeps NUMERIC as an 8-byte float: 15 significant digits there, 18 elsewhere.
    big = "12345678901" if backend.name == "sqlite" else "12345678901234"
    rows: list[dict[str, Any]] = [{"id": i, **dict.fromkeys(COLUMNS[1:])} for i in (1, 2, 3)]
    for i in range(4, 9):
        rows.append(
            {
                "id": i,
                "amount": decimal.Decimal(f"{'-' if i % 2 else ''}{big}.{i:04d}"),
                "note": f"note {i} ünïcode",
                "data": bytes([i, 0, 255]),
                "ts": dt.datetime(2024, 2, 29, 23, 59, 59, 123456 + i, tzinfo=tz),
            }
        )
    rows.append(
        {
            "id": 9,
            "amount": decimal.Decimal("0.0001"),
            "note": BIG_TEXT,
            "data": BIG_BYTES,
            "ts": dt.datetime(1970, 1, 1, tzinfo=tz),
        }
    )
    return rows


def fill(raw: Engine, table: str, rows: list[dict[str, Any]]) -> None:
    with raw.begin() as conn:
        target = Table(table, MetaData(), autoload_with=conn)
        conn.execute(insert(target), rows)


def read_back(raw: Engine, table: str) -> list[dict[str, Any]]:
    with raw.connect() as conn:
        target = Table(table, MetaData(), autoload_with=conn)
        result = conn.execute(select(target).order_by(target.c.id))
        return [dict(row._mapping) for row in result]


def expected_schema(backend: Backend) -> pa.Schema:
    return pa.schema(
        [
            ("id", pa.int64()),
            ("amount", pa.decimal128(18, 4)),
            ("note", pa.large_string()),
            ("data", pa.large_binary()),
            ("ts", backend.ts_type),
        ]
    )


def query(backend: Backend, raw: Engine, table: str) -> Any:
    """PostgreSQL and MariaDB: plain SQL (typed from the cursor's description). SQLite
    reports no column types, so its typed reads take a select() of the reflected table."""
    if backend.name == "sqlite":
        with raw.connect() as conn:
            target = Table(table, MetaData(), autoload_with=conn)
        return select(target).order_by(target.c.id)
    return f"SELECT id, amount, note, data, ts FROM {table} ORDER BY id"


# -- stream_query(format="arrow") -------------------------------------------------------------


def test_stream_query_arrow_types_from_columns_with_nulls_decimals_and_large_values(
    backend: Backend, db: SqlDatabase, raw: Engine, make_table: Callable[[], str]
) -> None:
    table = make_table()
    rows = source_rows(backend)
    fill(raw, table, rows)

    batches = list(stream_query.fn(db, query(backend, raw, table), batch_size=2, format="arrow"))

    assert all(isinstance(b, pa.RecordBatch) for b in batches)
    assert [b.schema for b in batches] == [expected_schema(backend)] * len(batches)
    assert batches[0].column("amount").null_count == 2  # the first batch: NULLs only
    got = pa.Table.from_batches(batches).to_pylist()
    assert got == read_back(raw, table) == rows


def test_stream_query_default_still_yields_row_batches(
    backend: Backend, db: SqlDatabase, raw: Engine, make_table: Callable[[], str]
) -> None:
    table = make_table()
    fill(raw, table, source_rows(backend)[:4])
    batches = list(stream_query.fn(db, f"SELECT id FROM {table} ORDER BY id", batch_size=3))
    assert batches == [[{"id": 1}, {"id": 2}, {"id": 3}], [{"id": 4}]]


def test_postgres_without_adbc_types_from_psycopg_description(postgres: Any) -> None:
    """The SQLAlchemy path PostgreSQL takes when ADBC is not installed gives the same
    schema as ADBC, also when the first batch holds only NULLs."""
    backend = Backend("postgres", postgres.sqlalchemy_url, DDL["postgres"], tz=True)
    engine = create_engine(backend.url)
    name = f"a_{uuid.uuid4().hex[:10]}"
    try:
        name = f"a_{uuid.uuid4().hex[:10]}"
        with engine.begin() as conn:
            conn.exec_driver_sql(DDL["postgres"].format(t=name))
        rows = source_rows(backend)
        fill(engine, name, rows)
        with SqlDatabase(url=backend.url) as db:
            ops = bulk_insert_task.ops(db)
            statement = f"SELECT id, amount, note, data, ts FROM {name} ORDER BY id"
            schema, batches = _sa_stream(ops, statement, None, 2)
            got = list(batches)
        assert schema == expected_schema(backend)
        assert pa.Table.from_batches(got).to_pylist() == rows
    finally:
        with engine.begin() as conn:
            conn.exec_driver_sql(f"DROP TABLE IF EXISTS {name}")
        engine.dispose()


def test_postgres_type_arrow_cannot_hold_names_the_column(postgres: Any) -> None:
    with (
        SqlDatabase(url=postgres.sqlalchemy_url) as db,
        pytest.raises(InvalidInput, match=r"(?i)'addr'.*inet.*cannot be represented") as info,
    ):
        list(stream_query.fn(db, "SELECT '10.0.0.1'::inet AS addr", format="arrow"))
    assert is_permanent(info.value)


def test_stream_query_unknown_format_is_refused(backend: Backend, db: SqlDatabase) -> None:
    with pytest.raises(InvalidInput, match="'rows' or 'arrow'"):
        list(stream_query.fn(db, "SELECT 1", format="feather"))  # type: ignore[call-overload]


# -- export_query / load_file with Parquet ------------------------------------------------------


def test_parquet_export_then_load_round_trips(
    backend: Backend,
    db: SqlDatabase,
    raw: Engine,
    make_table: Callable[[], str],
    tmp_path: Path,
) -> None:
    source, copy = make_table(), make_table()
    rows = source_rows(backend)
    fill(raw, source, rows)
    store = LocalStore(tmp_path / "lake")

    exported = export_query.fn(
        db, query(backend, raw, source), store, "out/rows.parquet", format="parquet", batch_size=2
    )

    path = tmp_path / "lake" / "out" / "rows.parquet"
    assert exported.rows == len(rows) and exported.size == path.stat().st_size
    on_disk = pq.read_table(path)  # pyarrow reading the file itself
    assert on_disk.schema.remove_metadata() == expected_schema(backend)
    assert on_disk.to_pylist() == rows

    assert load_file.fn(db, store, "out/rows.parquet", copy, format="parquet") == len(rows)
    assert read_back(raw, copy) == rows


def test_parquet_export_streams_row_groups_and_checksums_match(
    backend: Backend,
    db: SqlDatabase,
    raw: Engine,
    make_table: Callable[[], str],
    tmp_path: Path,
) -> None:
    """30,000 rows in row groups of 4,096: the writer holds one row group at a time, and the
    loaded copy has the source's count and sums (read by plain SQLAlchemy)."""
    source, copy = make_table(), make_table()
    n = 30_000
    tz = dt.timezone.utc if backend.tz else None
    t0 = dt.datetime(2024, 1, 1, tzinfo=tz)
    fill(
        raw,
        source,
        [
            {
                "id": i,
                "amount": decimal.Decimal(i) / 8,
                "note": f"n{i}",
                "data": i.to_bytes(4, "big"),
                "ts": t0 + dt.timedelta(seconds=i),
            }
            for i in range(n)
        ],
    )
    store = LocalStore(tmp_path)
    export_query.fn(
        db, query(backend, raw, source), store, "big.parquet", format="parquet", row_group_rows=4096
    )
    meta = pq.ParquetFile(tmp_path / "big.parquet").metadata
    assert meta.num_rows == n
    assert meta.num_row_groups == -(-n // 4096)
    assert max(meta.row_group(i).num_rows for i in range(meta.num_row_groups)) == 4096

    assert load_file.fn(db, store, "big.parquet", copy, format="parquet") == n
    sums = "SELECT count(*), sum(id), sum(amount), sum(length(note)) FROM {t}"
    with raw.connect() as conn:
        want = conn.execute(text(sums.format(t=source))).one()
        got = conn.execute(text(sums.format(t=copy))).one()
    assert got == want
    assert want[0] == n and decimal.Decimal(want[2]) == sum(
        decimal.Decimal(i) / 8 for i in range(n)
    )


def count(raw: Engine, table: str) -> int:
    with raw.connect() as conn:
        return int(conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one())


def write_parquet(path: Path, table: pa.Table, row_group_rows: int = 1024) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path, row_group_size=row_group_rows)


def good_table(n: int, backend: Backend) -> pa.Table:
    return pa.table(
        {
            "id": pa.array(range(n), pa.int64()),
            "amount": pa.array([decimal.Decimal(i) for i in range(n)], pa.decimal128(18, 4)),
            "note": pa.array([f"n{i}" for i in range(n)], pa.large_string()),
        }
    )


def test_corrupt_parquet_is_permanent_names_the_object_and_loads_nothing(
    backend: Backend,
    db: SqlDatabase,
    raw: Engine,
    make_table: Callable[[], str],
    tmp_path: Path,
) -> None:
    table = make_table()
    store = LocalStore(tmp_path)
    (tmp_path / "garbage.parquet").write_bytes(b"this is not parquet at all" * 100)
    write_parquet(tmp_path / "whole.parquet", good_table(5000, backend))
    whole = (tmp_path / "whole.parquet").read_bytes()
    # Intact header and first row groups, footer gone: fails before anything is written.
    (tmp_path / "truncated.parquet").write_bytes(whole[: len(whole) * 2 // 3])
    # A valid footer over a damaged data page in the last row group: fails part-way through
    # the load, after earlier row groups went to the server, so the transaction rolls back.
    meta = pq.ParquetFile(tmp_path / "whole.parquet").metadata
    last = meta.row_group(meta.num_row_groups - 1).column(0)
    start = last.data_page_offset
    damaged = bytearray(whole)
    damaged[start : start + last.total_compressed_size] = b"\xff" * last.total_compressed_size
    (tmp_path / "damaged.parquet").write_bytes(bytes(damaged))

    for key in ("garbage.parquet", "truncated.parquet", "damaged.parquet"):
        with pytest.raises(InvalidInput) as info:
            load_file.fn(db, store, key, table, format="parquet", batch_size=1024)
        assert key in str(info.value) and "parquet" in str(info.value)
        assert is_permanent(info.value)
        assert count(raw, table) == 0, key


def test_parquet_schema_mismatch_names_the_column_and_loads_nothing(
    backend: Backend,
    db: SqlDatabase,
    raw: Engine,
    make_table: Callable[[], str],
    tmp_path: Path,
) -> None:
    table = make_table()
    store = LocalStore(tmp_path)
    extra = good_table(10, backend).append_column("colour", pa.array(["red"] * 10))
    write_parquet(tmp_path / "extra.parquet", extra)
    wrong = pa.table({"id": pa.array(["1", "2", "three"]), "note": pa.array(["a", "b", "c"])})
    write_parquet(tmp_path / "wrong.parquet", wrong)

    with pytest.raises(InvalidInput, match=r"'colour'.*nothing was loaded") as info:
        load_file.fn(db, store, "extra.parquet", table, format="parquet")
    assert "extra.parquet" in str(info.value) and is_permanent(info.value)
    with pytest.raises(InvalidInput, match="column 'id'") as info:
        load_file.fn(db, store, "wrong.parquet", table, format="parquet")
    assert "wrong.parquet" in str(info.value) and is_permanent(info.value)
    assert count(raw, table) == 0


def test_parquet_value_refused_by_the_database_late_in_the_file_loads_nothing(
    backend: Backend,
    db: SqlDatabase,
    raw: Engine,
    make_table: Callable[[], str],
    tmp_path: Path,
) -> None:
    """The last of 5,000 rows breaks NOT NULL: the earlier row groups were already sent, and
    the whole load is one transaction, so none of them stays."""
    table = make_table()
    store = LocalStore(tmp_path)
    ids = pa.array([*range(4999), None], pa.int64())
    write_parquet(tmp_path / "late.parquet", pa.table({"id": ids}))
    with pytest.raises(FlowportError, match=r"late\.parquet.*nothing was loaded") as info:
        load_file.fn(db, store, "late.parquet", table, format="parquet", batch_size=1000)
    assert is_permanent(info.value) and "id" in str(info.value)
    assert count(raw, table) == 0


def test_missing_parquet_object_is_not_found(
    backend: Backend, db: SqlDatabase, make_table: Callable[[], str], tmp_path: Path
) -> None:
    table = make_table()
    with pytest.raises(FlowportError, match=r"nothing\.parquet") as info:
        load_file.fn(db, LocalStore(tmp_path), "nothing.parquet", table, format="parquet")
    assert is_permanent(info.value)


# -- bulk_insert of Arrow data ------------------------------------------------------------------


def arrow_rows(backend: Backend) -> pa.Table:
    return pa.Table.from_pylist(source_rows(backend), schema=expected_schema(backend))


@pytest.mark.parametrize("shape", ["table", "batch", "batches", "reader"])
def test_bulk_insert_takes_arrow_data(
    shape: str, backend: Backend, db: SqlDatabase, raw: Engine, make_table: Callable[[], str]
) -> None:
    table = make_table()
    data = arrow_rows(backend)
    given: Any = {
        "table": data,
        "batch": data.combine_chunks().to_batches()[0],
        "batches": iter(data.to_batches(max_chunksize=2)),
        "reader": pa.RecordBatchReader.from_batches(data.schema, data.to_batches(max_chunksize=3)),
    }[shape]
    assert bulk_insert.fn(db, table, given, batch_size=4) == data.num_rows
    assert read_back(raw, table) == source_rows(backend)


def test_bulk_insert_arrow_casts_to_the_column_types(
    backend: Backend, db: SqlDatabase, raw: Engine, make_table: Callable[[], str]
) -> None:
    """int32 ids, float amounts, naive or zoned time stamps and small strings are cast to
    what the table holds (UTC for a naive time stamp into a zoned column)."""
    table = make_table()
    other_tz = "UTC" if not backend.tz else None
    data = pa.table(
        {
            "id": pa.array([1, 2], pa.int32()),
            "amount": pa.array([1.5, None], pa.float64()),
            "note": pa.array(["a", "b"], pa.string()),
            "ts": pa.array([0, 1_000_000], pa.timestamp("us", tz=other_tz)),
        }
    )
    assert bulk_insert.fn(db, table, data) == 2
    tz = dt.timezone.utc if backend.tz else None
    got = read_back(raw, table)
    assert [(r["id"], r["amount"], r["note"], r["ts"]) for r in got] == [
        (1, decimal.Decimal("1.5"), "a", dt.datetime(1970, 1, 1, tzinfo=tz)),
        (2, None, "b", dt.datetime(1970, 1, 1, 0, 0, 1, tzinfo=tz)),
    ]


def test_bulk_insert_arrow_value_that_does_not_fit_names_the_column(
    backend: Backend, db: SqlDatabase, raw: Engine, make_table: Callable[[], str]
) -> None:
    table = make_table()
    data = pa.table({"id": pa.array(["1", "x"]), "note": pa.array(["a", "b"])})
    with pytest.raises(InvalidInput, match="column 'id'") as info:
        bulk_insert.fn(db, table, data)
    assert is_permanent(info.value)
    unknown = pa.table({"id": [1], "colour": ["red"]})
    with pytest.raises(InvalidInput, match="'colour'"):
        bulk_insert.fn(db, table, unknown)
    drift = [pa.record_batch({"id": [1]}), pa.record_batch({"id": [2], "note": ["b"]})]
    with pytest.raises(InvalidInput, match="schema drift"):
        bulk_insert.fn(db, table, drift, batch_size=1)
    assert count(raw, table) == 1  # the first part, its own committed transaction


def test_postgres_arrow_loads_through_adbc_and_copy_alike(postgres: Any) -> None:
    """Both PostgreSQL Arrow paths (ADBC ingest, psycopg binary COPY) write the same rows."""
    backend = Backend("postgres", postgres.sqlalchemy_url, DDL["postgres"], tz=True)
    engine = create_engine(backend.url)
    made = []
    try:
        with SqlDatabase(url=backend.url) as db:
            ops = bulk_insert_task.ops(db)
            for method in ("adbc", "copy"):
                name = f"a_{uuid.uuid4().hex[:10]}"
                made.append(name)
                with engine.begin() as conn:
                    conn.exec_driver_sql(DDL["postgres"].format(t=name))
                target = ops.reflect(name)
                loaded = insert_arrow(ops, target, arrow_rows(backend), batch_size=3, method=method)
                assert loaded == 9
                assert read_back(engine, name) == source_rows(backend), method
    finally:
        with engine.begin() as conn:
            for name in made:
                conn.exec_driver_sql(f"DROP TABLE IF EXISTS {name}")
        engine.dispose()


def test_empty_result_exports_an_empty_parquet_file_with_the_column_types(
    backend: Backend,
    db: SqlDatabase,
    raw: Engine,
    make_table: Callable[[], str],
    tmp_path: Path,
) -> None:
    table = make_table()
    statement = query(backend, raw, table)  # the table is empty
    exported = export_query.fn(db, statement, LocalStore(tmp_path), "e.parquet", format="parquet")
    assert exported.rows == 0
    on_disk = pq.read_table(tmp_path / "e.parquet")
    assert on_disk.num_rows == 0
    assert on_disk.schema.remove_metadata() == expected_schema(backend)


def test_mariadb_time_is_a_duration(mariadb: Any) -> None:
    """MySQL's TIME spans -838:59:59 to 838:59:59: a duration, not a time of day."""
    with SqlDatabase(url=mariadb.sqlalchemy_url) as db:
        statement = "SELECT CAST('-25:00:01.5' AS TIME(6)) AS t, CAST(NULL AS TIME) AS n"
        (batch,) = stream_query.fn(db, statement, format="arrow")
    assert batch.schema == pa.schema([("t", pa.duration("us")), ("n", pa.duration("us"))])
    assert batch.to_pylist() == [{"t": -dt.timedelta(hours=25, seconds=1.5), "n": None}]


@pytest.mark.usefixtures("prefect_server")
def test_arrow_tasks_as_task_runs_in_a_flow(postgres: Any, tmp_path: Path) -> None:
    """Inside a flow: bulk_insert of a pyarrow Table (a payload parameter), stream_query as
    Arrow (a generator task run), export_query to Parquet; read back by psycopg and pyarrow."""
    from prefect import flow

    backend = Backend("postgres", postgres.sqlalchemy_url, DDL["postgres"], tz=True)
    name = f"a_{uuid.uuid4().hex[:10]}"
    engine = create_engine(backend.url)
    with engine.begin() as conn:
        conn.exec_driver_sql(DDL["postgres"].format(t=name))
    db = SqlDatabase(url=backend.url)
    store = LocalStore(tmp_path)

    @flow
    def arrow_flow() -> tuple[int, list[int]]:
        loaded = bulk_insert(db, name, arrow_rows(backend), batch_size=4)
        sizes = [
            b.num_rows
            for b in stream_query(
                db, f"SELECT * FROM {name} ORDER BY id", batch_size=4, format="arrow"
            )
        ]
        export_query(db, f"SELECT * FROM {name} ORDER BY id", store, "f.parquet", "parquet")
        return loaded, sizes

    try:
        loaded, sizes = arrow_flow()
        assert loaded == 9 and sizes == [4, 4, 1]
        assert read_back(engine, name) == source_rows(backend)
        assert pq.read_table(tmp_path / "f.parquet").to_pylist() == source_rows(backend)
    finally:
        db.dispose()
        with engine.begin() as conn:
            conn.exec_driver_sql(f"DROP TABLE IF EXISTS {name}")
        engine.dispose()
