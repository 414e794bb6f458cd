"""The tasks inside real Prefect flows, retries of whole transactions, the plugin."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import Any

import cloudpickle
import pytest
from prefect import flow, task
from sqlalchemy import event
from sqlalchemy import exc as sa_exc

from flowport.artifacts import artifact_key
from flowport.errors import DeliveryError, TransientError
from flowport.plugins import get_connector
from flowport.retry import RetryPolicy
from flowport.store import LocalStore
from flowport_sql import (
    Exported,
    SqlDatabase,
    bulk_insert,
    execute,
    execute_many,
    export_query,
    fetch_all,
    fetch_one,
    load_file,
    stream_query,
    transaction,
    upsert,
)
from flowport_sql.db import Database
from flowport_sql.tasks import table_url
from tests.sql.helpers import FAST, retries

pytestmark = pytest.mark.usefixtures("prefect_server")


def test_tasks_in_a_flow(db: SqlDatabase, make_table: Any) -> None:
    t = make_table()

    @flow
    def pipeline() -> tuple[int, list[int], int]:
        inserted = bulk_insert(
            db, t, [{"id": i, "name": f"n{i}"} for i in range(100)], batch_size=30
        )
        sizes = [len(batch) for batch in stream_query(db, f"SELECT id FROM {t}", batch_size=40)]
        upsert(db, t, [{"id": 1, "name": "one"}], ["id"])
        return inserted, sizes, fetch_one(db, f"SELECT count(*) AS n FROM {t}")["n"]

    assert pipeline() == (100, [40, 40, 20], 100)
    assert fetch_one.fn(db, f"SELECT name FROM {t} WHERE id = 1") == {"name": "one"}


def test_stream_query_is_a_generator_task_run(db: SqlDatabase, make_table: Any) -> None:
    t = make_table()
    bulk_insert.fn(db, t, [{"id": i} for i in range(5)])

    @flow
    def reader() -> list[Any]:
        return [
            row
            for batch in stream_query(
                db, f"SELECT id FROM {t} ORDER BY id", batch_size=2, as_dicts=False
            )
            for row in batch
        ]

    assert reader() == [(0,), (1,), (2,), (3,), (4,)]
    assert stream_query.prefect_task.isgenerator


def test_tasks_and_block_survive_cloudpickle(db: SqlDatabase, make_table: Any) -> None:
    t = make_table()
    db.engine()  # an engine exists and must not travel
    task2, db2 = cloudpickle.loads(cloudpickle.dumps((bulk_insert, db)))
    assert task2.fn(db2, t, [{"id": 1}]) == 1
    assert fetch_all.fn(db, f"SELECT id FROM {t}") == [{"id": 1}]


def test_sqlite_lock_is_retried_and_the_transaction_applied_once(tmp_path: Path) -> None:
    path = tmp_path / "locked.db"
    db = SqlDatabase(database=str(path), connect_timeout=1)
    execute.fn(db, "CREATE TABLE t (id INTEGER PRIMARY KEY, n INTEGER)")
    blocker = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    blocker.execute("BEGIN EXCLUSIVE")
    release = threading.Event()

    def unlock() -> None:
        release.wait(30)
        blocker.execute("COMMIT")

    thread = threading.Thread(target=unlock)
    thread.start()

    seen: list[int] = []

    @event.listens_for(db.engine(), "handle_error")
    def on_error(ctx: Any) -> None:  # release the lock after the first failure
        seen.append(1)
        release.set()

    policy = RetryPolicy(attempts=10, initial_delay=0.1, max_delay=0.5)
    with retries() as rec:
        counts = transaction.fn(
            db,
            ["INSERT INTO t (id, n) VALUES (1, 1)", "UPDATE t SET n = n + 1"],
            retry_policy=policy,
        )
    thread.join()
    blocker.close()
    assert counts == [1, 1] and seen and rec.seen
    assert "database is locked" in rec.seen[0][2]
    assert fetch_all.fn(db, "SELECT id, n FROM t") == [{"id": 1, "n": 2}]


def test_lost_commit_is_not_repeated_where_its_outcome_is_unknown(
    db: SqlDatabase, make_table: Any
) -> None:
    t = make_table()
    engine = db.engine()

    def drop(conn: Any) -> None:
        raise sa_exc.DisconnectionError("connection dropped during COMMIT")

    event.listen(engine, "commit", drop)
    try:
        with retries() as rec, pytest.raises(DeliveryError, match="may or may not have committed"):
            execute.fn(db, f"INSERT INTO {t} (id) VALUES (1)", retry_policy=FAST)
        assert rec.seen == []
        # An idempotent unit (upsert) may run again: here every attempt fails the same way.
        with retries() as rec, pytest.raises(TransientError):
            upsert.fn(db, t, [{"id": 2}], ["id"], retry_policy=FAST)
        assert len(rec.seen) == FAST.attempts - 1
    finally:
        event.remove(engine, "commit", drop)


def test_transient_error_retries_the_whole_transaction(db: SqlDatabase, make_table: Any) -> None:
    t = make_table()
    calls: list[str] = []
    state = {"fail": 1}

    @event.listens_for(db.engine(), "before_cursor_execute")
    def flaky(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.startswith("UPDATE") and state["fail"]:
            state["fail"] -= 1
            raise sqlite3.OperationalError("database is locked")
        calls.append(statement.split()[0])

    with retries() as rec:
        transaction.fn(
            db,
            [f"INSERT INTO {t} (id, score) VALUES (1, 1)", f"UPDATE {t} SET score = score + 1"],
            retry_policy=FAST,
        )
    event.remove(db.engine(), "before_cursor_execute", flaky)
    assert len(rec.seen) == 1
    # The INSERT ran twice (the first attempt was rolled back), the row exists once.
    assert calls.count("INSERT") == 2
    assert fetch_all.fn(db, f"SELECT id, score FROM {t}") == [{"id": 1, "score": 2.0}]


def test_plugin_and_check() -> None:
    connector = get_connector("sql")
    assert connector.distribution == "flowport-sql" and connector.check_block is SqlDatabase
    assert {"execute", "bulk_insert", "stream_query", "export_query", "load_file"} <= set(
        connector.tasks
    )
    assert connector.check is not None
    assert "SELECT 1 returned 1" in connector.check(SqlDatabase())


def test_cli_check_with_a_saved_block(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from flowport.cli import main

    SqlDatabase(database=str(tmp_path / "c.db")).save("flowport-sql-unit-check", overwrite=True)
    loaded = SqlDatabase.load("flowport-sql-unit-check")
    assert loaded.database == str(tmp_path / "c.db")
    assert main(["check", "sql", "--block", "flowport-sql-unit-check"]) == 0
    assert "SELECT 1 returned 1" in capsys.readouterr().out


def test_database_ops_need_no_prefect(db: SqlDatabase) -> None:
    ops = Database(db.engine(), db.describe())
    assert ops.fetch("SELECT 2 AS two") == [{"two": 2}]


class Tracked(Database):
    """Database whose commit outcome is answered by the test (PostgreSQL asks txid_status)."""

    def __init__(self, *args: Any, outcome: bool, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.tracks_commits = True
        self.outcome = outcome
        self.asked: list[int] = []

    def _xid(self, conn: Any) -> int:
        return 4242

    def _committed(self, xid: Any) -> bool:
        self.asked.append(xid)
        return self.outcome


@pytest.mark.parametrize("committed", [True, False])
def test_lost_commit_is_resolved_by_asking_the_server(db: SqlDatabase, committed: bool) -> None:
    engine = db.engine()
    state = {"drops": 1}

    def drop_once(conn: Any) -> None:
        if state["drops"]:
            state["drops"] -= 1
            raise sa_exc.DisconnectionError("connection dropped during COMMIT")

    ran: list[int] = []
    ops = Tracked(engine, db.describe(), retry=FAST.bind(lambda e: False), outcome=committed)
    event.listen(engine, "commit", drop_once)
    try:

        def work(conn: Any) -> str:
            ran.append(1)
            conn.exec_driver_sql("SELECT 1")  # begins the transaction COMMIT ends
            return "done"

        assert ops.unit(work, "INSERT ...") == "done"
    finally:
        event.remove(engine, "commit", drop_once)
    assert ops.asked == [4242]
    # Committed: the work is not done again. Not committed: it is, once more.
    assert len(ran) == (1 if committed else 2)


def _task_run(task_run_id: Any) -> Any:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return client.read_task_run(task_run_id)


@task
def _echo(value: Any) -> Any:
    return value


def test_export_result_draws_no_false_edges(
    db: SqlDatabase, make_table: Any, tmp_path: Path
) -> None:
    """export_query used to return {"key", "rows", "bytes"}: Prefect linked those interned
    key strings to its run, so a later task given "bytes" (kafka's key_serializer) got an
    edge from export_query."""
    t = make_table()
    bulk_insert.fn(db, t, [{"id": i} for i in range(3)])
    store = LocalStore(tmp_path / "store")

    @flow
    def graph() -> tuple[Any, list[Any]]:
        exported = export_query(db, f"SELECT id FROM {t}", store, "e.csv")
        later = [_echo.submit(word) for word in ("key", "rows", "bytes", "size")]
        for future in later:
            future.wait()
        return exported, [future.task_run_id for future in later]

    exported, later = graph()
    assert isinstance(exported, Exported) and (exported.rows, exported.key) == (3, "e.csv")
    assert exported.size == store.stat("e.csv").size and exported["bytes"] == exported.size
    for task_run_id in later:
        assert _task_run(task_run_id).task_inputs["value"] == []


@task
def _make_rows(n: int, start: int = 0) -> list[dict[str, Any]]:
    return [{"id": i, "name": f"n{i}"} for i in range(start, start + n)]


def test_rows_futures_resolve_and_rows_are_not_walked(db: SqlDatabase, make_table: Any) -> None:
    """Row lists are payload: a future passed as the rows resolves (and draws its edge), but
    Prefect does not walk the list itself, which costs seconds on large lists."""
    t = make_table()
    insert = f"INSERT INTO {t} (id, name) VALUES (:id, :name)"

    @flow
    def load() -> tuple[list[int], Any]:
        made = _make_rows.submit(100)
        counts = [
            bulk_insert(db, t, made),  # a future as the rows
            execute_many(db, insert, _make_rows.submit(10, start=100)),
            upsert(db, t, _make_rows(5, start=110), ["id"]),  # a result, as a list
            bulk_insert(db, t, [{"id": i} for i in range(200, 1200)]),  # a plain list in-flow
        ]
        from_future = bulk_insert.submit(db, t, _make_rows.submit(1, start=9000))
        counts.append(from_future.result())
        return counts, from_future.task_run_id

    @flow
    def walked_run() -> Any:
        row = fetch_one(db, f"SELECT id + 6000 AS id FROM {t} WHERE id = 1")  # a task's result
        future = bulk_insert.submit(db, t, [row])  # inside a list: not walked, so no edge
        future.wait()
        return future.task_run_id

    counts, from_future = load()
    assert counts == [100, 10, 5, 1000, 1]
    assert len(_task_run(from_future).task_inputs["rows"]) == 1  # the future's edge
    assert _task_run(walked_run()).task_inputs["rows"] == []
    assert fetch_one.fn(db, f"SELECT count(*) AS n FROM {t}") == {"n": 1117}


def test_artifacts_are_keyed_by_target_without_credentials(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each summary artifact's key names its flow, task and target (the table, or the object
    exported to). A relative SQLite path keeps the key short: the core cuts keys at 120
    characters from the end."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    monkeypatch.chdir(tmp_path)
    db = SqlDatabase(database="a.db")
    execute.fn(db, "CREATE TABLE src (id INTEGER PRIMARY KEY)")
    execute.fn(db, "CREATE TABLE dst (id INTEGER PRIMARY KEY)")
    store = LocalStore(tmp_path / "store")

    @flow(name="sql-artifacts")
    def summarised() -> Any:
        from prefect.runtime import flow_run

        bulk_insert(db, "src", [{"id": 1}])
        upsert(db, "src", [{"id": 2}], ["id"])
        export_query(db, "SELECT id FROM src", store, "out.csv")
        load_file(db, store, "out.csv", "dst")
        return flow_run.id

    run_id = summarised()
    db.dispose()
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run_id]))
        )
    object_url = store.url_for("out.csv")
    assert table_url(db, "src") == "sqlite:///a.db/src"
    assert sorted(a.key or "" for a in artifacts) == sorted(
        [
            "flowport-sql-artifacts-bulk-insert-sqlite-a-db-src",
            "flowport-sql-artifacts-upsert-sqlite-a-db-src",
            "flowport-sql-artifacts-load-file-sqlite-a-db-dst",
            _flow_key("export_query", object_url),
        ]
    )


def _flow_key(task_name: str, target: str) -> str:
    """The key the core gives outside a flow, with this test's flow name put in."""
    return artifact_key(task_name, target).replace("flowport-", "flowport-sql-artifacts-", 1)


def test_table_url_has_no_credentials() -> None:
    pg = SqlDatabase(url="postgresql+psycopg://alice:pw-secret@db.example:5433/app")
    assert table_url(pg, "orders", "sales") == "postgresql://db.example:5433/app/sales.orders"
    parts = SqlDatabase(
        drivername="mysql+pymysql", username="u", password="pw-secret", host="h", database="d"
    )
    assert table_url(parts, "t") == "mysql://h/d/t"
