"""Faults on real servers: PostgreSQL killed mid-load, connections reset by the fault proxy,
permanent errors tried once."""

from __future__ import annotations

import datetime as dt
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from flowport.errors import AuthError
from flowport.hookspecs import hookimpl
from flowport.plugins import register, unregister
from flowport.retry import RetryPolicy
from flowport_sql import SqlDatabase, bulk_insert, execute, fetch_all, fetch_one, transaction
from flowport_sql.db import Database
from flowport_testing import Postgres
from tests.sql.helpers import FAST, checksum, retries

PATIENT = RetryPolicy(attempts=30, initial_delay=0.2, max_delay=2.0, deadline=180)
SLEEP = {"postgresql": "SELECT pg_sleep(2)", "mysql": "SELECT SLEEP(2)"}


@pytest.fixture(scope="module")
def own_postgres() -> Iterator[Postgres]:
    """A PostgreSQL of this module alone: killing it disturbs no other test or user."""
    svc = Postgres()
    try:
        svc.start()
        yield svc
    finally:
        svc.close()


def rows_for_load(n: int) -> Iterator[tuple[Any, ...]]:
    t0 = dt.datetime(2024, 1, 1)
    for i in range(n):
        yield (i, f"row-{i}", i / 7, t0 + dt.timedelta(seconds=i))


def test_postgres_killed_during_bulk_insert_loads_exactly_once(own_postgres: Postgres) -> None:
    n, batch = 200_000, 20_000
    db = SqlDatabase(url=own_postgres.sqlalchemy_url, connect_timeout=3)
    # No primary key: a batch applied twice would show as extra rows, not as an error.
    execute.fn(db, "CREATE TABLE load (id BIGINT, name TEXT, score DOUBLE PRECISION, ts TIMESTAMP)")
    killed = threading.Event()
    problems: list[BaseException] = []

    def killer() -> None:
        """Kill the server while a COPY runs, after two batches went through (a COPY
        transaction the watcher has not seen before is active)."""
        try:
            deadline = time.monotonic() + 120
            seen: set[str] = set()
            with psycopg.connect(own_postgres.dsn, autocommit=True) as conn:
                while time.monotonic() < deadline:
                    active = {
                        str(xid)
                        for (xid,) in conn.execute(
                            "SELECT backend_xid FROM pg_stat_activity WHERE state = 'active' "
                            "AND query LIKE 'COPY%' AND backend_xid IS NOT NULL"
                        )
                    }
                    seen |= active
                    if active and len(seen) >= 3:
                        break
                    time.sleep(0.001)
            own_postgres.kill()
            killed.set()
            own_postgres.restart()
        except BaseException as exc:  # reported by the test
            problems.append(exc)

    thread = threading.Thread(target=killer)
    thread.start()
    with retries() as rec:
        loaded = bulk_insert.fn(
            db,
            "load",
            rows_for_load(n),
            columns=["id", "name", "score", "ts"],
            batch_size=batch,
            retry_policy=PATIENT,
        )
    thread.join()
    assert not problems, problems
    assert killed.is_set() and rec.seen, "the server was not killed during the load"
    assert loaded == n
    stats = fetch_one.fn(db, "SELECT count(*) AS n, count(DISTINCT id) AS ids FROM load")
    assert stats == {"n": n, "ids": n}
    got = [
        tuple(r) for r in fetch_all.fn(db, "SELECT id, name, score, ts FROM load", as_dicts=False)
    ]
    assert checksum(got) == checksum(list(rows_for_load(n)))
    db.dispose()


def test_postgres_tells_whether_a_transaction_committed(own_postgres: Postgres) -> None:
    db = SqlDatabase(url=own_postgres.sqlalchemy_url)
    ops = Database(db.engine(), db.describe())
    with db.engine().connect() as conn:
        done = ops._xid(conn)
        conn.commit()
    with db.engine().connect() as conn:
        undone = ops._xid(conn)
        conn.rollback()
    assert ops._committed(done) is True and ops._committed(undone) is False
    db.dispose()


class ResetMidQuery:
    """Half a second into the call (the statement is then sleeping on the server) the proxy
    resets the connection; when flowport is about to retry, the toxic goes, so the retry
    finds a healthy path."""

    def __init__(self, proxy: Any, delay: float = 0.5) -> None:
        self.proxy = proxy
        self.toxic: Any = None
        self.lock = threading.Lock()
        self.timer = threading.Timer(delay, self._reset)

    def _reset(self) -> None:
        with self.lock:
            self.toxic = self.proxy.reset_peer(timeout_ms=0)

    @hookimpl
    def flowport_task_retried(self, name: str, attempt: int, **_: Any) -> None:
        with self.lock:
            if self.toxic is not None:
                self.toxic.remove()

    def __enter__(self) -> ResetMidQuery:
        register(self)
        self.timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.timer.cancel()
        unregister(self)
        with self.lock:
            if self.toxic is not None:
                self.toxic.remove()


@pytest.fixture
def proxied(server: Any, toxiproxy: Any) -> Iterator[tuple[SqlDatabase, Any]]:
    """The server behind a fault proxy of this test's own (name unique per test)."""
    proxy = toxiproxy.proxy(
        f"sql-{server.name}-{uuid.uuid4().hex[:8]}", f"{server.host}:{server.port}"
    )
    url = server.sqlalchemy_url.replace(f":{server.port}/", f":{proxy.port}/")
    db = SqlDatabase(url=url, connect_timeout=5)
    yield db, proxy
    db.dispose()
    proxy.delete()


def test_connection_reset_mid_query_is_retried(
    db: SqlDatabase, make_table: Any, proxied: tuple[SqlDatabase, Any]
) -> None:
    t = make_table()
    bulk_insert.fn(db, t, [{"id": i, "name": f"n{i}"} for i in range(50)])
    pdb, proxy = proxied
    sleep = SLEEP[db.dialect if db.dialect != "mariadb" else "mysql"].removeprefix("SELECT ")
    query = f"SELECT id, name FROM {t}, (SELECT {sleep} AS s) AS w ORDER BY id"
    with ResetMidQuery(proxy) as fault, retries() as rec:
        rows = fetch_all.fn(pdb, query, retry_policy=FAST)
    assert (
        fault.toxic is not None and len(rec.seen) == 1
    )  # reset once, then retried on a fresh connection
    assert rows == [{"id": i, "name": f"n{i}"} for i in range(50)]


def test_connection_reset_mid_transaction_applies_it_once(
    db: SqlDatabase, make_table: Any, proxied: tuple[SqlDatabase, Any]
) -> None:
    t = make_table()
    pdb, proxy = proxied
    with ResetMidQuery(proxy) as fault, retries() as rec:
        counts = transaction.fn(
            pdb,
            [
                (f"INSERT INTO {t} (id, name) VALUES (:id, :name)", {"id": 1, "name": "a"}),
                SLEEP[db.dialect if db.dialect != "mariadb" else "mysql"],
                f"UPDATE {t} SET score = 1.5 WHERE id = 1",
            ],
            retry_policy=FAST,
        )
    assert fault.toxic is not None and len(rec.seen) == 1 and counts[0] == 1
    assert fetch_all.fn(db, f"SELECT id, name, score FROM {t}") == [
        {"id": 1, "name": "a", "score": 1.5}
    ]


def test_wrong_password_is_permanent_tried_once_and_never_shown(server: Any) -> None:
    wrong = "Wr0ng-Passw0rd-xyz"
    url = server.sqlalchemy_url.replace(f":{server.password}@", f":{wrong}@")
    db = SqlDatabase(url=url)
    with retries() as rec, pytest.raises(AuthError) as info:
        fetch_one.fn(db, "SELECT 1", retry_policy=FAST)
    assert rec.seen == []
    assert wrong not in str(info.value) and f"{server.port}" in str(info.value)
    db.dispose()


def test_default_policy_rides_out_a_15_second_outage(
    db: SqlDatabase, make_table: Any, proxied: tuple[SqlDatabase, Any]
) -> None:
    """The documented default: about half a minute of retrying, so a 15 s outage (the path to
    the server refuses connections) is survived without any retry_policy given."""
    t = make_table()
    bulk_insert.fn(db, t, [{"id": 1, "name": "there"}])
    pdb, proxy = proxied
    enabled = threading.Event()

    def reopen() -> None:
        proxy.enable()
        enabled.set()

    proxy.disable()
    back = threading.Timer(15.0, reopen)
    back.start()
    try:
        with retries() as rec:
            row = fetch_one.fn(pdb, f"SELECT id, name FROM {t}")
        outlasted = enabled.is_set()  # the call returned only once the path was back
    finally:
        back.cancel()
        proxy.enable()
    assert row == {"id": 1, "name": "there"}
    assert rec.seen and outlasted
