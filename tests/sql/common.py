"""Test bodies shared by every database: SQLite (unit), PostgreSQL and MariaDB (integration).

A test module imports them with ``from tests.sql.common import *`` and provides two fixtures:
``db`` (a ``SqlDatabase``) and ``make_table`` (creates a fresh table of the standard shape
``id INTEGER PRIMARY KEY, name VARCHAR(200), score DOUBLE PRECISION, ts TIMESTAMP NULL`` and
returns its name; dropped after the test).
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import json
import re
from typing import Any

import pytest

from flowport.errors import ConfigError, Conflict, InvalidInput, NotFound
from flowport.secrets import redact
from flowport.store import LocalStore
from flowport_sql import (
    SqlDatabase,
    bulk_insert,
    execute,
    execute_many,
    export_query,
    fetch_all,
    fetch_many,
    fetch_one,
    load_file,
    stream_query,
    transaction,
    upsert,
)
from tests.sql.helpers import FAST, checksum, retries, statements

__all__ = [
    "sample_rows",
    "test_bulk_insert_counts_and_checksums",
    "test_bulk_insert_unknown_table_or_column_inserts_nothing",
    "test_execute_and_fetch",
    "test_execute_many",
    "test_export_then_load_round_trip",
    "test_injection_through_names_and_values_executes_nothing",
    "test_permanent_error_one_attempt_and_clean_message",
    "test_stream_query_batches",
    "test_transaction_is_all_or_nothing",
    "test_upsert_inserts_updates_and_dedupes",
]

T0 = dt.datetime(2024, 5, 17, 12, 30, 0)


def sample_rows(n: int, start: int = 0) -> list[dict[str, Any]]:
    return [
        {
            "id": i,
            "name": f"name-{i}" if i % 7 else None,
            "score": i * 0.25,
            "ts": T0 + dt.timedelta(seconds=i),
        }
        for i in range(start, start + n)
    ]


def norm(row: Any) -> tuple[Any, ...]:
    """A row as a comparable tuple whatever the driver returned (SQLite gives timestamps
    as strings through text queries)."""
    values = list(row.values()) if isinstance(row, dict) else list(row)
    out = []
    for v in values:
        if isinstance(v, dt.datetime):
            v = v.replace(tzinfo=None).isoformat(sep=" ")[:19]
        elif isinstance(v, str) and len(v) >= 19 and v[4] == "-" and v[10] in " T":
            v = v.replace("T", " ")[:19]
        elif isinstance(v, float | int) and not isinstance(v, bool):
            v = float(v)
        out.append(v)
    return tuple(out)


def table_rows(db: SqlDatabase, table: str) -> list[tuple[Any, ...]]:
    return [
        norm(r) for r in fetch_all.fn(db, f"SELECT id, name, score, ts FROM {table} ORDER BY id")
    ]


def count(db: SqlDatabase, table: str) -> int:
    return int(fetch_one.fn(db, f"SELECT count(*) AS n FROM {table}")["n"])


def test_execute_and_fetch(db: SqlDatabase, make_table: Any) -> None:
    t = make_table()
    n = execute.fn(
        db,
        f"INSERT INTO {t} (id, name, score, ts) VALUES (:id, :name, :score, :ts)",
        {"id": 1, "name": "one", "score": 1.5, "ts": T0},
    )
    assert n == 1
    execute.fn(db, f"INSERT INTO {t} (id, name) VALUES (2, 'two'), (3, 'three')")
    row = fetch_one.fn(db, f"SELECT id, name FROM {t} WHERE id = :id", {"id": 1})
    assert row == {"id": 1, "name": "one"}
    assert fetch_one.fn(db, f"SELECT id, name FROM {t} WHERE id = 1", as_dicts=False) == (1, "one")
    assert fetch_one.fn(db, f"SELECT id FROM {t} WHERE id = :id", {"id": 99}) is None
    assert [r["id"] for r in fetch_all.fn(db, f"SELECT id FROM {t} ORDER BY id")] == [1, 2, 3]
    # Each call is independent: a second fetch_many returns the same first rows again.
    first = fetch_many.fn(db, f"SELECT id FROM {t} ORDER BY id", size=2)
    second = fetch_many.fn(db, f"SELECT id FROM {t} ORDER BY id", size=2)
    assert first == second == [{"id": 1}, {"id": 2}]
    assert execute.fn(db, f"DELETE FROM {t} WHERE id > :id", {"id": 1}) == 2


def test_execute_many(db: SqlDatabase, make_table: Any) -> None:
    t = make_table()
    execute_many.fn(
        db,
        f"INSERT INTO {t} (id, name) VALUES (:id, :name)",
        [{"id": i, "name": f"n{i}"} for i in range(5)],
    )
    assert count(db, t) == 5
    assert execute_many.fn(db, f"INSERT INTO {t} (id) VALUES (:id)", []) == 0


def test_stream_query_batches(db: SqlDatabase, make_table: Any) -> None:
    t = make_table()
    rows = sample_rows(25)
    bulk_insert.fn(db, t, rows)
    batches = list(stream_query.fn(db, f"SELECT id, name FROM {t} ORDER BY id", batch_size=10))
    assert [len(b) for b in batches] == [10, 10, 5]
    assert [r["id"] for b in batches for r in b] == list(range(25))
    tuples = list(
        stream_query.fn(
            db, f"SELECT id FROM {t} WHERE id >= :lo ORDER BY id", {"lo": 20}, as_dicts=False
        )
    )
    assert tuples == [[(20,), (21,), (22,), (23,), (24,)]]
    assert list(stream_query.fn(db, f"SELECT id FROM {t} WHERE id < 0")) == []
    # A literal '%' next to a bound parameter (pyformat drivers need it escaped).
    liked = stream_query.fn(
        db, f"SELECT id FROM {t} WHERE name LIKE 'name-1%' AND id < :hi ORDER BY id", {"hi": 15}
    )
    assert [r["id"] for b in liked for r in b] == [1, 10, 11, 12, 13]


def test_bulk_insert_counts_and_checksums(db: SqlDatabase, make_table: Any) -> None:
    t = make_table()
    rows = sample_rows(2500)
    # A generator (never materialised by the caller), several batches.
    assert bulk_insert.fn(db, t, (r for r in rows), batch_size=1000) == 2500
    assert table_rows(db, t) == [norm(r) for r in rows]
    assert checksum(table_rows(db, t)) == checksum([norm(r) for r in rows])
    # Sequences in an explicit column order.
    more = [(r["score"], r["id"] + 10_000, r["name"]) for r in sample_rows(10)]
    assert bulk_insert.fn(db, t, more, columns=["score", "id", "name"]) == 10
    assert count(db, t) == 2510
    assert bulk_insert.fn(db, t, []) == 0


def test_bulk_insert_unknown_table_or_column_inserts_nothing(
    db: SqlDatabase, make_table: Any
) -> None:
    t = make_table()
    with pytest.raises(NotFound, match="no_such_table"):
        bulk_insert.fn(db, "no_such_table", sample_rows(3), retry_policy=FAST)
    with pytest.raises(InvalidInput, match="no column 'nope'"):
        bulk_insert.fn(db, t, [{"id": 1, "nope": 2}], retry_policy=FAST)
    with pytest.raises(InvalidInput, match="row 2 has no value"):
        bulk_insert.fn(db, t, [{"id": 1, "name": "a"}, {"id": 2}], retry_policy=FAST)
    assert count(db, t) == 0


def test_upsert_inserts_updates_and_dedupes(db: SqlDatabase, make_table: Any) -> None:
    t = make_table()
    upsert.fn(
        db, t, [{"id": 1, "name": "a", "score": 1.0}, {"id": 2, "name": "b", "score": 2.0}], ["id"]
    )
    n = upsert.fn(
        db,
        t,
        [
            {"id": 2, "name": "B", "score": 20.0},
            {"id": 3, "name": "c", "score": 3.0},
            {"id": 3, "name": "C", "score": 30.0},  # the same key twice: the last one wins
        ],
        ["id"],
    )
    assert n == 3
    got = [
        (r["id"], r["name"], r["score"])
        for r in fetch_all.fn(db, f"SELECT id, name, score FROM {t} ORDER BY id")
    ]
    assert got == [(1, "a", 1.0), (2, "B", 20.0), (3, "C", 30.0)]
    # update_columns=[]: only new keys are inserted, existing rows stay as they are.
    upsert.fn(db, t, [{"id": 1, "name": "zzz"}, {"id": 4, "name": "d"}], ["id"], update_columns=[])
    got = [(r["id"], r["name"]) for r in fetch_all.fn(db, f"SELECT id, name FROM {t} ORDER BY id")]
    assert got == [(1, "a"), (2, "B"), (3, "C"), (4, "d")]
    # Only the named columns are updated.
    upsert.fn(db, t, [{"id": 1, "name": "x", "score": 9.0}], ["id"], update_columns=["score"])
    assert fetch_one.fn(db, f"SELECT name, score FROM {t} WHERE id = 1") == {
        "name": "a",
        "score": 9.0,
    }


def test_transaction_is_all_or_nothing(db: SqlDatabase, make_table: Any) -> None:
    t = make_table()
    counts = transaction.fn(
        db,
        [
            (f"INSERT INTO {t} (id, name) VALUES (:id, :name)", {"id": 1, "name": "a"}),
            (
                f"INSERT INTO {t} (id, name) VALUES (:id, :name)",
                [{"id": 2, "name": "b"}, {"id": 3, "name": "c"}],
            ),
            f"UPDATE {t} SET score = 1.0",
        ],
    )
    assert counts[0] == 1 and counts[2] == 3
    with retries() as rec, pytest.raises(Conflict):
        transaction.fn(
            db,
            [
                f"DELETE FROM {t}",
                (f"INSERT INTO {t} (id, name) VALUES (:id, :name)", {"id": 7, "name": "x"}),
                (f"INSERT INTO {t} (id, name) VALUES (:id, :name)", {"id": 7, "name": "y"}),
            ],
            retry_policy=FAST,
        )
    assert rec.seen == []
    assert [r["id"] for r in fetch_all.fn(db, f"SELECT id FROM {t} ORDER BY id")] == [1, 2, 3]


def test_permanent_error_one_attempt_and_clean_message(db: SqlDatabase, make_table: Any) -> None:
    t = make_table()
    execute.fn(db, f"INSERT INTO {t} (id, name) VALUES (1, 'first')")
    value = "very-private-value-0042"
    with retries() as rec, pytest.raises(Conflict) as info:
        execute.fn(
            db,
            f"INSERT INTO {t} (id, name)\nVALUES (:id, :name)",
            {"id": 1, "name": value},
            retry_policy=FAST,
        )
    assert rec.seen == []  # exactly one attempt
    message = str(info.value)
    # (redact: the harness's password equals its database name, which is then masked too)
    # (a mysql:// URL is named MariaDB once the dialect has seen the server)
    assert redact(db.describe()).split(" database ", 1)[1] in message
    assert db.system in message or "MariaDB database" in message
    assert f"INSERT INTO {t} (id, name)" in message
    assert "VALUES" not in message  # first line of the statement only
    assert value not in message and "[parameters" not in message
    if db.password is not None:
        assert db.password.get_secret_value() not in message
    with retries() as rec, pytest.raises(InvalidInput):
        execute.fn(db, f"SELEC broken FROM {t}", retry_policy=FAST)
    assert rec.seen == []


def test_injection_through_names_and_values_executes_nothing(
    db: SqlDatabase, make_table: Any
) -> None:
    t = make_table()
    victims = make_table()
    execute.fn(db, f"INSERT INTO {victims} (id, name) VALUES (1, 'still here')")
    bad_tables = [
        f"{t}; DROP TABLE {victims}; --",
        f'{t}" ; DROP TABLE {victims}; --',
        f"{t}` ; DROP TABLE {victims}; --",
        f"{t}' ; DROP TABLE {victims}; --",
    ]
    bad_columns = [
        f"name) VALUES ('x'); DROP TABLE {victims}; --",
        f'name"; DROP TABLE {victims}; --',
        f"name`; DROP TABLE {victims}; --",
    ]
    evil = f"'); DROP TABLE {victims}; --"
    with statements(db.engine()) as sent:
        for name in bad_tables:
            with pytest.raises(NotFound):
                bulk_insert.fn(db, name, [{"id": 5}], retry_policy=FAST)
            with pytest.raises(NotFound):
                upsert.fn(db, name, [{"id": 5}], ["id"], retry_policy=FAST)
        for column in bad_columns:
            with pytest.raises(InvalidInput):
                bulk_insert.fn(db, t, [{"id": 5, column: "x"}], retry_policy=FAST)
            with pytest.raises(InvalidInput):
                upsert.fn(db, t, [{"id": 5, "name": "x"}], [column], retry_policy=FAST)
            with pytest.raises(InvalidInput):
                upsert.fn(
                    db,
                    t,
                    [{"id": 5, "name": "x"}],
                    ["id"],
                    update_columns=[column],
                    retry_policy=FAST,
                )
        # Values travel as bound parameters and are stored verbatim.
        bulk_insert.fn(db, t, [{"id": 1, "name": evil}])
        upsert.fn(db, t, [{"id": 2, "name": evil}], ["id"])
        execute.fn(db, f"INSERT INTO {t} (id, name) VALUES (:id, :name)", {"id": 3, "name": evil})
    # The hostile names may appear only inside quoted identifiers or literals (catalogue
    # lookups); outside quotes, no statement sent to the driver contains DROP.
    unquoted = [re.sub(r'"(?:[^"]|"")*"|\'(?:[^\']|\'\')*\'|`(?:[^`]|``)*`', "", s) for s in sent]
    assert sent
    assert not [s for s in unquoted if re.search(r"\bDROP\s+TABLE\b", s, re.I)]
    assert [r["name"] for r in fetch_all.fn(db, f"SELECT name FROM {t} ORDER BY id")] == [evil] * 3
    assert fetch_all.fn(db, f"SELECT id, name FROM {victims}") == [{"id": 1, "name": "still here"}]


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_export_then_load_round_trip(
    db: SqlDatabase, make_table: Any, tmp_path: Any, fmt: str
) -> None:
    src, dst = make_table(), make_table()
    rows = sample_rows(1234)
    rows[5]["name"] = 'comma, "quote"\nnewline'
    bulk_insert.fn(db, src, rows)
    store = LocalStore(tmp_path / "store")
    out = export_query.fn(
        db,
        f"SELECT id, name, score, ts FROM {src} ORDER BY id",
        store,
        f"exports/{src}.{fmt}",
        format=fmt,
        batch_size=100,
    )
    assert out.rows == 1234 and out.size == store.stat(f"exports/{src}.{fmt}").size
    assert out.key == f"exports/{src}.{fmt}"
    text = store.get_bytes(f"exports/{src}.{fmt}").decode()
    if fmt == "jsonl":
        assert json.loads(text.splitlines()[1])["id"] == 1
    else:
        assert text.splitlines()[0] == "id,name,score,ts"
    assert load_file.fn(db, store, f"exports/{src}.{fmt}", dst, format=fmt, batch_size=500) == 1234
    assert table_rows(db, dst) == table_rows(db, src)
    # CSV and JSONL need no pyarrow (unit-sql runs without it); Parquet says how to get it.
    has_arrow = importlib.util.find_spec("pyarrow") is not None
    with pytest.raises(InvalidInput if has_arrow else ConfigError) as info:
        load_file.fn(db, store, f"exports/{src}.{fmt}", dst, format="parquet")
    assert has_arrow or "flowport[arrow]" in str(info.value)
