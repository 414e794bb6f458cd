"""Helpers shared by the SQL connector's unit and integration tests."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, event

from flowport.hookspecs import hookimpl
from flowport.plugins import register, unregister
from flowport.retry import RetryPolicy

#: Retries without waiting, for unit tests.
FAST = RetryPolicy(attempts=4, initial_delay=0, max_delay=0, jitter=False)


class Retries:
    """Records flowport_task_retried hook calls."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, int, str]] = []

    @hookimpl
    def flowport_task_retried(
        self, name: str, attempt: int, attempts: int, delay: float, exception: BaseException
    ) -> None:
        self.seen.append((name, attempt, f"{type(exception).__name__}: {exception}"))


@contextmanager
def retries() -> Iterator[Retries]:
    rec = Retries()
    register(rec)
    try:
        yield rec
    finally:
        unregister(rec)


@contextmanager
def statements(engine: Engine) -> Iterator[list[str]]:
    """Every SQL string the engine sends to the driver while the block is open."""
    seen: list[str] = []

    def before(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(statement)

    event.listen(engine, "before_cursor_execute", before)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", before)


def checksum(rows: list[tuple[Any, ...]]) -> str:
    """Order-independent digest of rows (sorted first)."""
    digest = hashlib.sha256()
    for row in sorted(rows):
        digest.update(repr(row).encode())
    return digest.hexdigest()
