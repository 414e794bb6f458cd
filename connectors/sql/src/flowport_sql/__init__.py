"""flowport-sql: Prefect tasks for SQL databases through SQLAlchemy 2 (PostgreSQL, MariaDB /
MySQL, SQLite), with retries that never apply a transaction twice.

    from prefect import flow
    from flowport_sql import SqlDatabase, bulk_insert, execute, fetch_all

    @flow
    def load():
        db = SqlDatabase(url="sqlite:///demo.db")
        execute(db, "CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, name TEXT)")
        bulk_insert(db, "t", [{"id": i, "name": f"n{i}"} for i in range(1000)])
        return fetch_all(db, "SELECT count(*) AS n FROM t")

Install ``flowport-sql[postgres]`` (psycopg 3) or ``flowport-sql[mysql]`` (PyMySQL) for those
servers; SQLite needs nothing more. See the README for every task and the retry rules.
"""

from flowport_sql.blocks import SqlDatabase
from flowport_sql.db import Database
from flowport_sql.tasks import (
    BulkInsert,
    Execute,
    ExecuteMany,
    Exported,
    ExportQuery,
    FetchAll,
    FetchMany,
    FetchOne,
    LoadFile,
    SqlTask,
    StreamQuery,
    Transaction,
    Upsert,
    bulk_insert,
    execute,
    execute_many,
    export_query,
    fetch_all,
    fetch_many,
    fetch_one,
    load_file,
    stream_query,
    transaction,
    upsert,
)
from flowport_sql.transfer import CursorExtract, SqlQuerySource, SqlTableSink

__all__ = [
    "BulkInsert",
    "CursorExtract",
    "Database",
    "Execute",
    "ExecuteMany",
    "ExportQuery",
    "Exported",
    "FetchAll",
    "FetchMany",
    "FetchOne",
    "LoadFile",
    "SqlDatabase",
    "SqlQuerySource",
    "SqlTableSink",
    "SqlTask",
    "StreamQuery",
    "Transaction",
    "Upsert",
    "bulk_insert",
    "execute",
    "execute_many",
    "export_query",
    "fetch_all",
    "fetch_many",
    "fetch_one",
    "load_file",
    "stream_query",
    "transaction",
    "upsert",
]
