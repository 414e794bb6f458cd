"""The Connector object the ``flowport.connectors`` entry point names."""

from __future__ import annotations

from flowport.plugins import Connector
from flowport_sql import tasks
from flowport_sql.blocks import SqlDatabase


def check(block: SqlDatabase) -> str:
    """``flowport check sql --block NAME``: runs ``SELECT 1`` (changes nothing)."""
    value = tasks.fetch_one.fn(block, "SELECT 1", as_dicts=False)
    if value is None or value[0] != 1:
        raise RuntimeError(f"{block.describe()}: SELECT 1 returned {value!r}")
    return f"{block.describe()}: SELECT 1 returned 1"


connector = Connector(
    name="sql",
    distribution="flowport-sql",
    summary="SQL databases through SQLAlchemy 2: queries, streaming, bulk load, upsert",
    tasks={name: getattr(tasks, name) for name in tasks.__all__ if name[0].islower()},
    blocks=[SqlDatabase],
    check=check,
    check_block=SqlDatabase,
)
