"""Lineage of the SQL tasks and transfer endpoints: tables as ``postgresql://host:port/db/
schema.table`` (``mysql://host:port/db/table``, ``sqlite:///path/table``), never a user or
password.

Which tables a statement reads or writes comes from parsing it with ``sqlglot`` (the
``lineage`` extra): ``INSERT``/``UPDATE``/``DELETE``/``MERGE``/``CREATE`` write their target
and read the rest; a query reads every table it names (not its CTEs). Without ``sqlglot``, or
for SQL it cannot parse, a query is reported as a read of the whole database
(``postgresql://host:port/db``) and a statement reports nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import make_url

from flowport.lineage import Lineage, endpoint_uris, sql_uri, store_uri
from flowport.task import RetryingTask
from flowport_sql.blocks import SqlDatabase
from flowport_sql.db import Statement
from flowport_sql.transfer import SqlQuerySource, SqlTableSink

#: sqlglot's names of the SQLAlchemy dialects.
_DIALECTS = {"postgresql": "postgres", "mysql": "mysql", "mariadb": "mysql", "sqlite": "sqlite"}


def _where(database: SqlDatabase) -> tuple[str, str | None, int | None, str | None]:
    """Dialect, host, port and database name: no user, no password, no query string."""
    if database.url:
        url = make_url(database.url)
        return database.dialect, url.host, url.port, url.database
    return database.dialect, database.host, database.port, database.database


def table_uri(database: SqlDatabase, table: str, schema: str | None = None) -> str:
    """The asset URI of ``schema.table`` in ``database``."""
    return sql_uri(*_where(database), table, schema)


def database_uri(database: SqlDatabase) -> str:
    """``postgresql://host:port/db``: the whole database (a query it could not parse)."""
    return table_uri(database, "x", "x").rsplit("/", 1)[0]


def tables(database: SqlDatabase, statement: Statement) -> tuple[list[str], list[str]] | None:
    """``(reads, writes)``: table URIs ``statement`` reads and writes; None if unknown."""
    try:
        import sqlglot
        from sqlglot import expressions as exp
    except ImportError:
        return None
    sql = statement if isinstance(statement, str) else str(statement)
    try:
        tree = sqlglot.parse_one(sql, read=_DIALECTS.get(database.dialect))
    except Exception:  # sqlglot's ParseError, TokenError, ...: not SQL it knows
        return None
    if tree is None:
        return None
    ctes = {cte.alias_or_name for cte in tree.find_all(exp.CTE)}

    def uri(table: Any) -> str:
        return table_uri(database, table.name, table.db or None)

    target = None
    if isinstance(tree, exp.Insert | exp.Update | exp.Delete | exp.Merge | exp.Create):
        target = tree.this if isinstance(tree.this, exp.Table) else tree.find(exp.Table)
    found = [t for t in tree.find_all(exp.Table) if t.name and t.name not in ctes]
    reads = [uri(t) for t in found if t is not target]
    writes = [uri(target)] if target is not None and target.name else []
    if not reads and not writes:
        return None
    return reads, writes


def query_reads(database: SqlDatabase, statement: Statement) -> list[str]:
    """The tables a query reads, or the whole database when that is unknown."""
    found = tables(database, statement)
    return (found[0] + found[1]) if found else [database_uri(database)]


# -- task declarations (``lineage = ...`` on the task classes) --------------------------------


def query_lineage(task: RetryingTask, arguments: dict[str, Any], result: Any) -> Lineage:
    """fetch_* / stream_query: reads the tables of the query."""
    return Lineage(reads=query_reads(arguments["database"], arguments["statement"]))


def statement_lineage(task: RetryingTask, arguments: dict[str, Any], result: Any) -> Lineage:
    """execute / execute_many: what the statement reads and writes; rows affected."""
    return _statements(arguments["database"], [arguments["statement"]], result)


def transaction_lineage(task: RetryingTask, arguments: dict[str, Any], result: Any) -> Lineage:
    """transaction: every statement's reads and writes, as one unit."""
    statements = arguments["statements"]
    items = [statements] if isinstance(statements, str) else list(statements)
    sql = [item[0] if isinstance(item, tuple) else item for item in items]
    rows = sum(result) if isinstance(result, list) else None
    return _statements(arguments["database"], sql, rows)


def _statements(database: SqlDatabase, statements: Iterable[Statement], rows: Any) -> Lineage:
    reads: list[str] = []
    writes: list[str] = []
    for statement in statements:
        found = tables(database, statement)
        if found:
            reads += found[0]
            writes += found[1]
    metadata = {"rows": rows} if isinstance(rows, int) and rows >= 0 else {}
    return Lineage(reads=[r for r in reads if r not in writes], writes=writes, metadata=metadata)


def insert_lineage(task: RetryingTask, arguments: dict[str, Any], result: Any) -> Lineage:
    """bulk_insert / upsert: the table; rows written."""
    table = table_uri(arguments["database"], arguments["table"], arguments.get("schema"))
    return Lineage(writes=[table], metadata={"rows": result} if isinstance(result, int) else {})


def export_lineage(task: RetryingTask, arguments: dict[str, Any], result: Any) -> Lineage:
    """export_query: the query's tables into the object; rows and bytes."""
    metadata: dict[str, Any] = {"format": arguments.get("format")}
    if result is not None:
        metadata.update(rows=result.rows, bytes=result.size)
    return Lineage(
        reads=query_reads(arguments["database"], arguments["statement"]),
        writes=[store_uri(arguments["store"], arguments["key"])],
        metadata=metadata,
    )


def load_lineage(task: RetryingTask, arguments: dict[str, Any], result: Any) -> Lineage:
    """load_file: the object into the table; rows loaded."""
    table = table_uri(arguments["database"], arguments["table"], arguments.get("schema"))
    return Lineage(
        reads=[store_uri(arguments["store"], arguments["key"])],
        writes=[table],
        metadata={"rows": result} if isinstance(result, int) else {},
    )


# -- transfer endpoints ---------------------------------------------------------------------


@endpoint_uris.register
def _source(source: SqlQuerySource) -> list[str]:
    if source.table is not None:
        return [table_uri(source.database, source.table, source.schema)]
    return query_reads(source.database, str(source.query))


@endpoint_uris.register
def _sink(sink: SqlTableSink) -> list[str]:
    return [table_uri(sink.database, sink.table, sink.schema)]
