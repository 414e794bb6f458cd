"""SQLite fixtures: a fresh database file per test, no services."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from flowport_sql import SqlDatabase, execute

DDL = (
    "CREATE TABLE {name} (id INTEGER PRIMARY KEY, name VARCHAR(200), "
    "score DOUBLE PRECISION, ts TIMESTAMP NULL)"
)


@pytest.fixture
def db(tmp_path: Path) -> Iterator[SqlDatabase]:
    database = SqlDatabase(drivername="sqlite", database=str(tmp_path / "test.db"))
    yield database
    database.dispose()


@pytest.fixture
def make_table(db: SqlDatabase) -> Callable[[], str]:
    def make() -> str:
        name = f"t_{uuid.uuid4().hex[:10]}"
        execute.fn(db, DDL.format(name=name))
        return name

    return make
