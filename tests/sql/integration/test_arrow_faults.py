"""Arrow loads on a PostgreSQL killed in the middle of them: ``bulk_insert`` of a pyarrow
Table through ADBC ingest (each part applied exactly once) and a Parquet ``load_file`` (one
transaction: retried whole). Counted and checksummed by psycopg, not flowport."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from flowport import LocalStore
from flowport.retry import RetryPolicy
from flowport_sql import SqlDatabase, bulk_insert, execute, load_file
from flowport_testing import Postgres
from tests.sql.helpers import retries

PATIENT = RetryPolicy(attempts=30, initial_delay=0.2, max_delay=2.0, deadline=180)
DDL = "CREATE TABLE {t} (id BIGINT, name TEXT, score DOUBLE PRECISION, ts TIMESTAMP)"
SUMS = "SELECT count(*), count(DISTINCT id), sum(id), sum(length(name)), sum(score) FROM {t}"


@pytest.fixture(scope="module")
def own_postgres() -> Iterator[Postgres]:
    """A PostgreSQL of this module alone: killing it disturbs no other test or user."""
    svc = Postgres()
    try:
        svc.start()
        yield svc
    finally:
        svc.close()


def data(n: int) -> pa.Table:
    ids = pa.array(range(n), pa.int64())
    return pa.table(
        {
            "id": ids,
            "name": pa.array([f"row-{i}" for i in range(n)], pa.large_string()),
            "score": pa.array([i / 8 for i in range(n)], pa.float64()),
            "ts": ids.cast(pa.timestamp("s")).cast(pa.timestamp("us")),
        }
    )


def kill_during_copy(
    server: Postgres, copies: int, problems: list[BaseException]
) -> threading.Event:
    """Start a thread that kills ``server`` once it has seen ``copies`` COPY transactions
    active (the last one still running), then restarts it; returns the 'killed' event."""
    killed = threading.Event()

    def killer() -> None:
        try:
            deadline = time.monotonic() + 120
            seen: set[str] = set()
            with psycopg.connect(server.dsn, autocommit=True) as conn:
                while time.monotonic() < deadline:
                    active = {
                        str(xid)
                        for (xid,) in conn.execute(
                            "SELECT backend_xid FROM pg_stat_activity WHERE state = 'active' "
                            "AND query LIKE 'COPY%' AND backend_xid IS NOT NULL"
                        )
                    }
                    seen |= active
                    if active and len(seen) >= copies:
                        break
                    time.sleep(0.001)
            server.kill()
            killed.set()
            server.restart()
        except BaseException as exc:  # reported by the test
            problems.append(exc)

    threading.Thread(target=killer, daemon=True).start()
    return killed


def sums(server: Postgres, table: str) -> tuple[object, ...]:
    with psycopg.connect(server.dsn) as conn:
        row = conn.execute(SUMS.format(t=table)).fetchone()
    assert row is not None
    return tuple(row)


def expected_sums(n: int) -> tuple[object, ...]:
    return (
        n,
        n,
        sum(range(n)),
        sum(len(f"row-{i}") for i in range(n)),
        sum(i / 8 for i in range(n)),
    )


def test_killed_during_arrow_bulk_insert_loads_each_part_exactly_once(
    own_postgres: Postgres,
) -> None:
    n = 400_000
    db = SqlDatabase(url=own_postgres.sqlalchemy_url, connect_timeout=3)
    execute.fn(db, DDL.format(t="arrow_load"))  # no key: a part applied twice shows as rows
    problems: list[BaseException] = []
    killed = kill_during_copy(own_postgres, 3, problems)
    with retries() as rec:
        loaded = bulk_insert.with_options(retry_policy=PATIENT).fn(
            db, "arrow_load", data(n), batch_size=40_000
        )
    assert not problems, problems
    assert killed.is_set() and rec.seen, "the server was not killed during the load"
    assert loaded == n
    got = sums(own_postgres, "arrow_load")
    assert got[:4] == expected_sums(n)[:4] and got[4] == pytest.approx(expected_sums(n)[4])
    db.dispose()


def test_killed_during_parquet_load_file_retries_the_one_transaction(
    own_postgres: Postgres, tmp_path: Path
) -> None:
    n = 600_000
    pq.write_table(data(n), tmp_path / "rows.parquet", row_group_size=50_000)
    db = SqlDatabase(url=own_postgres.sqlalchemy_url, connect_timeout=3)
    execute.fn(db, DDL.format(t="parquet_load"))
    problems: list[BaseException] = []
    killed = kill_during_copy(own_postgres, 1, problems)
    with retries() as rec:
        loaded = load_file.with_options(retry_policy=PATIENT).fn(
            db, LocalStore(tmp_path), "rows.parquet", "parquet_load", format="parquet"
        )
    assert not problems, problems
    assert killed.is_set() and rec.seen, "the server was not killed during the load"
    assert loaded == n
    got = sums(own_postgres, "parquet_load")
    assert got[:4] == expected_sums(n)[:4] and got[4] == pytest.approx(expected_sums(n)[4])
    db.dispose()
