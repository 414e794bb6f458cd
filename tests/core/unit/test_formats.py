"""flowport.formats: streaming CSV / JSON Lines / Parquet over a LocalStore."""

from __future__ import annotations

import datetime as dt
import decimal
import sys
import tracemalloc
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa

from flowport.errors import InvalidInput
from flowport.formats import arrow_schema_for, arrow_type_for, read_batches, write_batches
from flowport.store import LocalStore

UTC = dt.timezone.utc
SCHEMA = pa.schema(
    [
        ("id", pa.int64()),
        ("price", pa.decimal128(12, 3)),
        ("big", pa.decimal256(50, 10)),
        ("at", pa.timestamp("us", tz="UTC")),
        ("naive", pa.timestamp("us")),
        ("day", pa.date32()),
        ("clock", pa.time64("us")),
        ("took", pa.duration("us")),
        ("ok", pa.bool_()),
        ("ratio", pa.float64()),
        ("note", pa.large_string()),
        ("blob", pa.large_binary()),
    ]
)


def sample_batch(start: int = 0, n: int = 5) -> Any:
    rows = []
    for i in range(start, start + n):
        null = i % 4 == 3  # every fourth row is all NULLs except the id
        rows.append(
            {
                "id": i,
                "price": None if null else decimal.Decimal(f"{i}.125"),
                "big": None if null else decimal.Decimal("1234567890123456789012345678.0123456789"),
                "at": None if null else dt.datetime(2024, 6, 1, 12, 30, i % 60, 123456, UTC),
                "naive": None if null else dt.datetime(2024, 6, 1, 8, 0, i % 60),
                "day": None if null else dt.date(2024, 1, 1) + dt.timedelta(days=i),
                "clock": None if null else dt.time(23, 59, i % 60, 5),
                "took": None if null else dt.timedelta(seconds=i, microseconds=7),
                "ok": None if null else i % 2 == 0,
                "ratio": None if null else i / 3,
                "note": None if null else 'héllo, "world"\n' + "x" * (100_000 if i == 1 else 3),
                "blob": None if null else bytes(range(256)) * (400 if i == 1 else 1),
            }
        )
    return pa.RecordBatch.from_pylist(rows, schema=SCHEMA)


@pytest.fixture
def store(tmp_path: Path) -> LocalStore:
    return LocalStore(tmp_path / "store")


def visible(store: LocalStore) -> list[str]:
    return [o.key for o in store.list()]


@pytest.mark.parametrize(
    ("fmt", "key", "compression"),
    [
        ("parquet", "out/data.parquet", None),
        ("parquet", "out/data.parquet", "snappy"),
        ("csv", "out/data.csv", None),
        ("csv", "out/data.csv.gz", "gzip"),
        ("jsonl", "out/data.jsonl", None),
        ("jsonl", "out/data.jsonl.gz", "gzip"),
    ],
)
def test_round_trip_every_type(store: LocalStore, fmt: str, key: str, compression: Any) -> None:
    batches = [sample_batch(0, 5), sample_batch(5, 3)]
    result = write_batches(store, key, batches, fmt, row_group_rows=4, compression=compression)
    assert (result.key, result.rows, result.format) == (key, 8, fmt)
    assert result.bytes == store.stat(key).size
    schema = None if fmt == "parquet" else SCHEMA
    back = pa.Table.from_batches(list(read_batches(store, key, schema=schema, batch_rows=3)))
    expected = pa.Table.from_batches(batches)
    assert back.schema.names == SCHEMA.names
    assert back.cast(SCHEMA).equals(expected), back.to_pylist()[:2]
    assert back.column("price").null_count == 2  # rows 3 and 7


def test_format_is_inferred_and_columns_selected(store: LocalStore) -> None:
    write_batches(store, "a.parquet", [sample_batch()])
    got = pa.Table.from_batches(list(read_batches(store, "a.parquet", columns=["id", "note"])))
    assert got.schema.names == ["id", "note"]
    assert got.column("id").to_pylist() == [0, 1, 2, 3, 4]
    write_batches(store, "a.csv", [sample_batch()], "csv")
    got = pa.Table.from_batches(list(read_batches(store, "a.csv", columns=["id"])))
    assert got.column("id").to_pylist() == [0, 1, 2, 3, 4]


def test_parquet_writes_one_row_group_per_row_group_rows(store: LocalStore) -> None:
    result = write_batches(
        store, "g.parquet", (sample_batch(i * 3, 3) for i in range(10)), row_group_rows=7
    )
    meta = pq.ParquetFile(store.root / "g.parquet").metadata
    assert result.rows == 30
    assert [meta.row_group(i).num_rows for i in range(meta.num_row_groups)] == [7, 7, 7, 7, 2]


def test_empty_input_with_schema_writes_a_valid_empty_file(store: LocalStore) -> None:
    for key in ("e.parquet", "e.csv", "e.jsonl"):
        result = write_batches(store, key, [], key.rsplit(".")[-1], schema=SCHEMA)
        assert result.rows == 0
        assert sum(b.num_rows for b in read_batches(store, key, schema=SCHEMA)) == 0
    assert pq.read_schema(store.root / "e.parquet").names == SCHEMA.names
    with pytest.raises(InvalidInput, match="no schema"):
        write_batches(store, "f.parquet", [])
    assert not store.exists("f.parquet")


# -- memory bound ----------------------------------------------------------------------------


class SamplingStore(LocalStore):
    """A LocalStore that samples Arrow's allocated bytes whenever a chunk arrives."""

    peak_arrow = 0
    chunks = 0

    def _put_chunks(self, key: str, chunks: Iterator[bytes], if_not_exists: bool) -> Any:
        def sampled() -> Iterator[bytes]:
            for chunk in chunks:
                self.chunks += 1
                self.peak_arrow = max(self.peak_arrow, pa.total_allocated_bytes())
                yield chunk

        return super()._put_chunks(key, sampled(), if_not_exists)


def write_rows(tmp_path: Path, total_rows: int, group_rows: int) -> dict[str, Any]:
    """Write ``total_rows`` generated rows in batches of 2,000; sample memory on the way."""
    store = SamplingStore(tmp_path / f"s{total_rows}")
    batch_rows = 2_000
    peak_seen = [0]
    base = pa.total_allocated_bytes()

    def batches() -> Iterator[Any]:
        for start in range(0, total_rows, batch_rows):
            ids = pa.array(range(start, start + batch_rows), pa.int64())
            text = pa.array(
                [f"row-{i:012d}-payload" for i in range(start, start + batch_rows)],
                pa.large_string(),
            )
            value = pa.compute.cast(ids, pa.float64())
            batch = pa.record_batch([ids, text, value], names=["id", "text", "value"])
            peak_seen[0] = max(peak_seen[0], pa.total_allocated_bytes())
            yield batch

    tracemalloc.start()
    try:
        result = write_batches(store, "big.parquet", batches(), row_group_rows=group_rows)
        _, py_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    one_batch = next(batches())
    return {
        "result": result,
        "meta": pq.ParquetFile(store.root / "big.parquet").metadata,
        "chunks": store.chunks,
        "row_group_bytes": one_batch.nbytes * group_rows // batch_rows,
        "arrow_peak": max(peak_seen[0], store.peak_arrow) - base,
        "py_peak": py_peak,
    }


def test_parquet_memory_is_bounded_by_a_row_group(tmp_path: Path) -> None:
    group_rows = 10_000
    small = write_rows(tmp_path, 100_000, group_rows)
    big = write_rows(tmp_path, 200_000, group_rows)
    meta, result = big["meta"], big["result"]
    assert result.rows == 200_000 == meta.num_rows
    assert [meta.row_group(i).num_rows for i in range(meta.num_row_groups)] == [group_rows] * 20
    # Row groups reached the store as they filled: one chunk per row group (+ the footer).
    assert big["chunks"] >= meta.num_row_groups
    row_group, whole = big["row_group_bytes"], big["row_group_bytes"] * 20
    print(
        f"\nrow group {row_group / 1e6:.2f} MB as Arrow, file {whole / 1e6:.2f} MB as Arrow "
        f"({result.bytes / 1e6:.2f} MB Parquet); peak Arrow pool over the write: "
        f"{small['arrow_peak'] / 1e6:.2f} MB at 100k rows, {big['arrow_peak'] / 1e6:.2f} MB "
        f"at 200k rows; peak Python (tracemalloc) {big['py_peak'] / 1e6:.2f} MB"
    )
    # Bounded by a few row groups (the pending group, the encoder's pages, the codec) ...
    assert big["arrow_peak"] < 6 * row_group < whole / 3
    # ... and flat in the file size: twice the rows, the same peak.
    assert big["arrow_peak"] <= 1.25 * small["arrow_peak"] + 256 * 1024
    assert big["py_peak"] < 2 * row_group


# -- bad input -------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["parquet", "csv", "jsonl"])
def test_schema_drift_names_the_columns_and_leaves_nothing(store: LocalStore, fmt: str) -> None:
    good = pa.record_batch([pa.array([1, 2]), pa.array(["a", "b"])], names=["id", "name"])
    drifted = pa.record_batch([pa.array(["3"]), pa.array(["c"])], names=["id", "name"])
    # Enough good rows first that a row group is already on its way to the store.
    with pytest.raises(InvalidInput, match=r"'id' int64 -> string") as info:
        write_batches(store, f"d.{fmt}", [good, good, good, drifted], fmt, row_group_rows=2)
    assert "nothing was written" in str(info.value)
    extra = pa.record_batch(
        [pa.array([1]), pa.array(["a"]), pa.array([0.5])], names=["id", "name", "score"]
    )
    with pytest.raises(InvalidInput, match=r"'score' unexpected"):
        write_batches(store, f"d.{fmt}", [extra], fmt, schema=good.schema)
    assert visible(store) == []


def test_a_failing_source_mid_write_leaves_no_key(store: LocalStore) -> None:
    def source() -> Iterator[Any]:
        for i in range(5):
            yield sample_batch(i * 4, 4)
        raise RuntimeError("source database went away")

    for key in ("x.parquet", "x.csv", "x.jsonl"):
        with pytest.raises(RuntimeError, match="went away"):
            write_batches(store, key, source(), row_group_rows=4)
        assert not store.exists(key)
    assert visible(store) == []
    assert not any((store.root).rglob("*.part"))


def test_a_failed_rewrite_keeps_the_previous_object(store: LocalStore) -> None:
    write_batches(store, "k.parquet", [sample_batch()])
    before = store.get_bytes("k.parquet")
    with pytest.raises(InvalidInput):
        write_batches(store, "k.parquet", [sample_batch(), sample_batch().select(["id"])])
    assert store.get_bytes("k.parquet") == before


def test_corrupt_parquet_names_the_key(store: LocalStore) -> None:
    store.put_bytes(b"PAR1 this is not parquet at all", "bad/file.parquet")
    with pytest.raises(InvalidInput, match=r"bad/file\.parquet"):
        list(read_batches(store, "bad/file.parquet"))
    write_batches(store, "cut.parquet", [sample_batch()])
    data = store.get_bytes("cut.parquet")
    store.put_bytes(data[: len(data) // 2] + data[-200:], "cut.parquet")  # footer kept, body cut
    with pytest.raises(InvalidInput, match=r"cut\.parquet"):
        list(read_batches(store, "cut.parquet"))


def test_unseekable_store_streams_are_spooled(store: LocalStore, monkeypatch: Any) -> None:
    write_batches(store, "s.parquet", [sample_batch(0, 5)])
    real_open = store._open

    class Stream:
        def __init__(self, inner: Any) -> None:
            self.inner = inner

        def read(self, n: int = -1) -> bytes:
            return self.inner.read(n)

        def seekable(self) -> bool:
            return False

        def close(self) -> None:
            self.inner.close()

        def __enter__(self) -> Stream:
            return self

        def __exit__(self, *exc: object) -> None:
            self.close()

    monkeypatch.setattr(store, "_open", lambda key: Stream(real_open(key)))
    got = pa.Table.from_batches(list(read_batches(store, "s.parquet")))
    assert got.equals(pa.Table.from_batches([sample_batch(0, 5)]))


def test_unknown_extension_and_format_are_refused(store: LocalStore) -> None:
    with pytest.raises(InvalidInput, match="extension"):
        list(read_batches(store, "data.bin"))
    with pytest.raises(InvalidInput, match="format must be"):
        write_batches(store, "a.parquet", [sample_batch()], "avro")


# -- SQL types -------------------------------------------------------------------------------


def test_arrow_type_for_sqlalchemy_types() -> None:
    from sqlalchemy.dialects import mysql, postgresql

    cases = {
        sa.Integer(): pa.int64(),
        sa.BigInteger(): pa.int64(),
        sa.SmallInteger(): pa.int16(),
        mysql.BIGINT(unsigned=True): pa.uint64(),
        sa.Numeric(10, 2): pa.decimal128(10, 2),
        sa.Numeric(60, 5): pa.decimal256(60, 5),
        sa.Numeric(): pa.decimal128(38, 9),
        sa.Float(): pa.float64(),
        sa.REAL(): pa.float32(),
        postgresql.DOUBLE_PRECISION(): pa.float64(),
        sa.Boolean(): pa.bool_(),
        sa.String(20): pa.large_string(),
        sa.Text(): pa.large_string(),
        sa.Enum("a", "b"): pa.large_string(),
        sa.LargeBinary(): pa.large_binary(),
        postgresql.BYTEA(): pa.large_binary(),
        sa.Date(): pa.date32(),
        sa.DateTime(timezone=True): pa.timestamp("us", tz="UTC"),
        postgresql.TIMESTAMP(timezone=True): pa.timestamp("us", tz="UTC"),
        sa.DateTime(): pa.timestamp("us"),
        sa.Time(): pa.time64("us"),
        sa.Interval(): pa.duration("us"),
        postgresql.INTERVAL(): pa.duration("us"),
        sa.JSON(): pa.large_string(),
        postgresql.JSONB(): pa.large_string(),
        sa.Uuid(): pa.string(),
        postgresql.ARRAY(sa.Integer()): pa.large_list(pa.int64()),
        sa.Integer: pa.int64(),  # a class works too
    }
    for sql_type, expected in cases.items():
        assert arrow_type_for(sql_type, "c") == expected, sql_type


@pytest.mark.parametrize(
    "sql_type",
    [sa.types.NullType(), sa.Numeric(80, 2), sa.Time(timezone=True)],
    ids=["null", "numeric80", "timetz"],
)
def test_unrepresentable_type_names_the_column(sql_type: Any) -> None:
    with pytest.raises(InvalidInput, match="column 'amount'"):
        arrow_type_for(sql_type, "amount")


def test_postgres_only_type_is_refused() -> None:
    from sqlalchemy.dialects import postgresql

    with pytest.raises(InvalidInput, match=r"column 'addr'.*CAST"):
        arrow_type_for(postgresql.INET(), "addr")


def test_schema_from_columns_feeds_a_round_trip(store: LocalStore) -> None:
    table = sa.Table(
        "t",
        sa.MetaData(),
        sa.Column("id", sa.BigInteger, nullable=False),
        sa.Column("amount", sa.Numeric(12, 2)),
        sa.Column("at", sa.DateTime(timezone=True)),
        sa.Column("uid", sa.Uuid()),
    )
    schema = arrow_schema_for(table.columns)
    assert schema.field("id").nullable is False
    row = {
        "id": 1,
        "amount": decimal.Decimal("9.99"),
        "at": dt.datetime(2024, 1, 1, tzinfo=UTC),
        "uid": str(uuid.UUID(int=5)),
    }
    batch = pa.RecordBatch.from_pylist([row, {"id": 2}], schema=schema)
    write_batches(store, "t.jsonl", [batch], schema=schema)
    back = pa.Table.from_batches(list(read_batches(store, "t.jsonl", schema=schema)))
    assert back.to_pylist()[0] == row
    assert back.to_pylist()[1]["amount"] is None


def test_missing_pyarrow_says_how_to_install(store: LocalStore, monkeypatch: Any) -> None:
    from flowport.errors import ConfigError

    monkeypatch.setitem(sys.modules, "pyarrow.csv", None)
    with pytest.raises(ConfigError, match=r"pip install 'flowport\[arrow\]'"):
        write_batches(store, "a.csv", [])
