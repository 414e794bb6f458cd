"""stream_query is a generator task: its hooks know their task and connector, and the
caller's code between batches does not run inside the task's scope."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flowport.hookspecs import hookimpl
from flowport.plugins import register, unregister
from flowport.progress import current_task
from flowport_sql import SqlDatabase, bulk_insert, stream_query


class Scopes:
    def __init__(self) -> None:
        self.seen: list[tuple[str, str, str]] = []

    def _note(self, hook: str) -> None:
        scope = current_task()
        self.seen.append((hook, scope.task_name, scope.connector) if scope else (hook, "", ""))

    @hookimpl
    def flowport_task_started(self, task_name: str, **_: Any) -> None:
        self._note("started")

    @hookimpl
    def flowport_task_succeeded(self, task_name: str, **_: Any) -> None:
        self._note("succeeded")


def test_stream_query_hooks_know_their_task_and_never_leak_it(
    db: SqlDatabase, make_table: Callable[[], str]
) -> None:
    table = make_table()
    bulk_insert.fn(db, table, [{"id": i, "name": f"n{i}"} for i in range(5)])
    scopes = Scopes()
    register(scopes, name="scope-recorder")
    try:
        between = []
        for _batch in stream_query.fn(db, f"SELECT id FROM {table}", batch_size=2):
            between.append(current_task())
    finally:
        unregister(scopes)
    assert scopes.seen == [
        ("started", "stream_query", "sql"),
        ("succeeded", "stream_query", "sql"),
    ]
    assert between == [None, None, None]  # the caller's loop body is not the task's
    assert current_task() is None
