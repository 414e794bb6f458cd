"""PostgreSQL and MariaDB from the real-service harness; the same test bodies run on both."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from flowport_sql import SqlDatabase, execute

DDL = (
    "CREATE TABLE {name} (id INTEGER PRIMARY KEY, name VARCHAR(200), "
    "score DOUBLE PRECISION, ts TIMESTAMP NULL)"
)


@pytest.fixture(params=["postgres", "mariadb"])
def server(request: pytest.FixtureRequest) -> Any:
    """Each database server in turn (a harness service with ``.sqlalchemy_url``)."""
    return request.getfixturevalue(request.param)


@pytest.fixture
def db(server: Any) -> Iterator[SqlDatabase]:
    database = SqlDatabase(url=server.sqlalchemy_url)
    yield database
    database.dispose()


@pytest.fixture
def make_table(db: SqlDatabase) -> Iterator[Callable[[], str]]:
    made: list[str] = []

    def make() -> str:
        name = f"t_{uuid.uuid4().hex[:10]}"
        execute.fn(db, DDL.format(name=name))
        made.append(name)
        return name

    yield make
    for name in made:
        execute.fn(db, f"DROP TABLE IF EXISTS {name}")
