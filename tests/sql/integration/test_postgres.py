"""PostgreSQL specifics: binary COPY and its text fallback, the saved block and the CLI check."""

from __future__ import annotations

import datetime as dt
import decimal
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from flowport.errors import TransientError
from flowport_sql import Database, SqlDatabase, execute, fetch_all, stream_query
from flowport_testing import Postgres
from tests.sql.helpers import FAST, retries


@pytest.fixture
def pg(postgres: Postgres) -> Iterator[SqlDatabase]:
    db = SqlDatabase(url=postgres.sqlalchemy_url)
    yield db
    db.dispose()


@pytest.fixture
def typed_table(pg: SqlDatabase) -> Iterator[str]:
    name = f"typed_{uuid.uuid4().hex[:8]}"
    execute.fn(
        pg,
        f"CREATE TABLE {name} (i2 SMALLINT, i8 BIGINT, f4 REAL, n NUMERIC(12,3), b BOOLEAN, "
        "d DATE, t TIME, ts TIMESTAMP, tz TIMESTAMPTZ, u UUID, bin BYTEA, v VARCHAR(10))",
    )
    yield name
    execute.fn(pg, f"DROP TABLE {name}")


ROW = {
    "i2": 7,
    "i8": 2**40,
    "f4": 1.5,
    "n": decimal.Decimal("12.345"),
    "b": True,
    "d": dt.date(2024, 2, 29),
    "t": dt.time(23, 59, 58),
    "ts": dt.datetime(2024, 1, 1, 12, 0, 1),
    "tz": dt.datetime(2024, 1, 1, 12, 0, tzinfo=dt.timezone.utc),
    "u": uuid.UUID("12345678-1234-5678-1234-567812345678"),
    "bin": b"\x00\xff",
    "v": "hello",
}


def test_binary_copy_round_trips_every_native_type(pg: SqlDatabase, typed_table: str) -> None:
    ops = Database(pg.engine(), pg.describe())
    assert ops.bulk_insert(typed_table, [ROW, {k: None for k in ROW}]) == 2
    assert ops.copy_format == "binary"
    got = fetch_all.fn(pg, f"SELECT * FROM {typed_table} ORDER BY i2 NULLS LAST")
    assert got[0] == ROW and got[1] == {k: None for k in ROW}


def test_values_the_binary_format_cannot_take_fall_back_to_text(
    pg: SqlDatabase, typed_table: str
) -> None:
    rows: list[dict[str, Any]] = [
        {"i8": 1, "ts": dt.datetime(2024, 1, 1)},
        {"i8": "2", "ts": "2024-01-02 03:04:05"},  # strings, as from a CSV file
        {"i8": 3, "ts": dt.datetime(2024, 1, 3)},
    ]
    ops = Database(pg.engine(), pg.describe())
    assert ops.bulk_insert(typed_table, rows, batch_size=1) == 3
    assert ops.copy_format == "text"
    got = fetch_all.fn(pg, f"SELECT i8, ts FROM {typed_table} ORDER BY i8")
    assert got == [
        {"i8": 1, "ts": dt.datetime(2024, 1, 1)},
        {"i8": 2, "ts": dt.datetime(2024, 1, 2, 3, 4, 5)},
        {"i8": 3, "ts": dt.datetime(2024, 1, 3)},
    ]


def test_types_without_a_binary_dumper_use_text_copy(pg: SqlDatabase) -> None:
    name = f"chars_{uuid.uuid4().hex[:8]}"
    execute.fn(pg, f"CREATE TABLE {name} (c CHAR(3), j JSONB, a INTEGER[])")
    try:
        ops = Database(pg.engine(), pg.describe())
        assert ops.bulk_insert(name, [("abc", '{"k": 1}', [1, 2])], columns=["c", "j", "a"]) == 1
        assert ops.copy_format == "text"
        assert fetch_all.fn(pg, f"SELECT c, j, a FROM {name}") == [
            {"c": "abc", "j": {"k": 1}, "a": [1, 2]}
        ]
    finally:
        execute.fn(pg, f"DROP TABLE {name}")


def test_stream_broken_after_the_first_batch_raises_instead_of_repeating(
    pg: SqlDatabase, postgres: Postgres
) -> None:
    import psycopg

    batches = stream_query.fn(
        pg,
        "SELECT g, pg_backend_pid() AS pid FROM generate_series(1, 100000) AS g",
        batch_size=10,
        retry_policy=FAST,
    )
    first = next(batches)
    assert [r["g"] for r in first] == list(range(1, 11))
    with psycopg.connect(postgres.dsn, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", [first[0]["pid"]])
    with retries() as rec, pytest.raises(TransientError, match="running 'SELECT g"):
        for _ in batches:
            pass
    assert rec.seen == []
    assert fetch_all.fn(pg, "SELECT 1 AS one") == [{"one": 1}]  # the pool recovered


@pytest.mark.usefixtures("prefect_server")
def test_saved_block_and_cli_check(postgres: Postgres, capsys: pytest.CaptureFixture[str]) -> None:
    from prefect.client.orchestration import get_client

    from flowport.cli import main

    SqlDatabase(url=postgres.sqlalchemy_url).save("flowport-sql-pg-check", overwrite=True)
    loaded = SqlDatabase.load("flowport-sql-pg-check")
    assert loaded.password is not None
    assert loaded.password.get_secret_value() == postgres.password
    with get_client(sync_client=True) as client:
        document = client.read_block_document_by_name(
            "flowport-sql-pg-check", "flowport-sql-database", include_secrets=False
        )
    assert ":" + postgres.password + "@" not in str(document.data)
    assert str(document.data["password"]).strip("*") == ""  # obfuscated by the server
    assert main(["check", "sql", "--block", "flowport-sql-pg-check"]) == 0
    assert "SELECT 1 returned 1" in capsys.readouterr().out
