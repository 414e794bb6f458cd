"""Prefect task workers: ``serve`` two flowport SQL tasks in another process, ``.delay()``
each from this one; every task has its own task key, so each run executes its own body."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from flowport_sql import SqlDatabase, execute, fetch_one

SERVE = "from flowport_sql import execute, fetch_one\n" + (
    "from prefect.task_worker import serve\nserve(fetch_one.prefect_task, execute.prefect_task)\n"
)


@pytest.fixture
def task_worker(prefect_server: None, tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A task worker serving fetch_one and execute, pointed at the session's Prefect server."""
    from prefect.settings import get_current_settings

    env = {**os.environ, **get_current_settings().to_environment_variables(exclude_unset=True)}
    log = (tmp_path / "worker.log").open("wb")
    worker = subprocess.Popen([sys.executable, "-c", SERVE], env=env, stdout=log, stderr=log)
    try:
        yield worker
    finally:
        worker.terminate()
        worker.wait(30)
        log.close()


def test_delayed_sql_tasks_run_their_own_bodies_on_a_task_worker(
    task_worker: subprocess.Popen[bytes], tmp_path: Path
) -> None:
    assert fetch_one.prefect_task.task_key != execute.prefect_task.task_key
    db = SqlDatabase(database=str(tmp_path / "worker.db"))
    execute.fn(db, "CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT)")
    execute.fn(db, "INSERT INTO t VALUES (1, 'one')")

    changed = execute.prefect_task.delay(db, "UPDATE t SET name = 'uno' WHERE id = 1")
    row = fetch_one.prefect_task.delay(db, "SELECT id, name FROM t WHERE id = :id", {"id": 1})

    assert changed.result(timeout=120) == 1  # execute's body: a rowcount
    assert row.result(timeout=120) in ({"id": 1, "name": "one"}, {"id": 1, "name": "uno"})
    assert task_worker.poll() is None
    assert fetch_one.fn(db, "SELECT name FROM t") == {"name": "uno"}
    db.dispose()
