"""Prebuilt Prefect tasks: RetryingTask subclasses and ready-made instances.

Every call is independent: it checks a connection out of the block's pool, does its work
and gives the connection back; no cursor or transaction survives between calls. The unit
of retry is one transaction (for ``bulk_insert`` and ``upsert``: one batch). Tasks never
hash their inputs (``cache_policy=NO_CACHE``), so rows passed to them cost nothing extra.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol, overload

from sqlalchemy import make_url

from flowport.artifacts import summarise
from flowport.errors import InvalidInput
from flowport.formats import ROW_GROUP_ROWS, read_batches, write_batches
from flowport.plugins import hook
from flowport.progress import Progress, in_task
from flowport.retry import Retrier, RetryPolicy
from flowport.store import ObjectStore
from flowport.task import RetryingTask
from flowport_sql import errors
from flowport_sql import lineage as sql_lineage
from flowport_sql.arrow import load_arrow, open_arrow, stream_arrow
from flowport_sql.blocks import SqlDatabase
from flowport_sql.db import Database, Row, Statement, TxStatement, check_format

if TYPE_CHECKING:
    import pyarrow as pa


class SqlTask(RetryingTask):
    """Base of this connector's tasks: the transient predicate and a retry policy patient
    enough for a database restart: it keeps trying for about half a minute (the deadline
    ends it, not the attempts; waits of up to 4 s with full jitter)."""

    tags = ("flowport", "sql")
    retry_policy = RetryPolicy(attempts=100, initial_delay=0.5, max_delay=4.0, deadline=30.0)

    def is_transient(self, exc: BaseException) -> bool:
        return errors.is_transient(exc)

    def ops(self, database: SqlDatabase, retrier: Retrier | None = None) -> Database:
        """The operations over ``database``'s engine, retrying under this call's policy."""
        engine = database.engine()
        where, system = database.describe(), database.system
        if system == "MySQL" and getattr(engine.dialect, "is_mariadb", False):
            # A mysql:// URL may point at MariaDB; the dialect knows once it has connected.
            where, system = where.replace("MySQL", "MariaDB", 1), "MariaDB"
        return Database(engine, where, system, retrier or self.retrier)


class Execute(SqlTask):
    """Run one statement with bound parameters (``:name`` placeholders) in its own
    transaction; returns the number of rows affected. Retried whole on transient errors."""

    lineage = sql_lineage.statement_lineage

    def run(
        self, database: SqlDatabase, statement: Statement, params: Mapping[str, Any] | None = None
    ) -> int:
        return self.ops(database).execute(statement, params)


class ExecuteMany(SqlTask):
    """Run one statement once per parameter set (executemany), all in one transaction;
    returns the rows affected. Inputs are not hashed (no cache), nor walked by Prefect."""

    lineage = sql_lineage.statement_lineage

    payload_params = ("seq_of_params",)

    def run(
        self,
        database: SqlDatabase,
        statement: Statement,
        seq_of_params: Sequence[Mapping[str, Any]],
    ) -> int:
        return self.ops(database).execute_many(statement, seq_of_params)


class FetchOne(SqlTask):
    """Run a query and return its first row (a dict, or a tuple with ``as_dicts=False``),
    or ``None`` when it returns no row."""

    lineage = sql_lineage.query_lineage

    def run(
        self,
        database: SqlDatabase,
        statement: Statement,
        params: Mapping[str, Any] | None = None,
        as_dicts: bool = True,
    ) -> Any:
        rows = self.ops(database).fetch(statement, params, size=1, as_dicts=as_dicts)
        return rows[0] if rows else None


class FetchMany(SqlTask):
    """Run a query and return its first ``size`` rows. Each call runs the query afresh, so
    two calls return the same rows (no cursor is kept between calls)."""

    lineage = sql_lineage.query_lineage

    def run(
        self,
        database: SqlDatabase,
        statement: Statement,
        params: Mapping[str, Any] | None = None,
        size: int = 100,
        as_dicts: bool = True,
    ) -> list[Any]:
        if size < 1:
            raise InvalidInput("SQL: fetch_many size must be at least 1", system="SQL")
        return self.ops(database).fetch(statement, params, size=size, as_dicts=as_dicts)


class FetchAll(SqlTask):
    """Run a query and return all its rows (for big results use ``stream_query``)."""

    lineage = sql_lineage.query_lineage

    def run(
        self,
        database: SqlDatabase,
        statement: Statement,
        params: Mapping[str, Any] | None = None,
        as_dicts: bool = True,
    ) -> list[Any]:
        return self.ops(database).fetch(statement, params, as_dicts=as_dicts)


def _stream(
    ops: Database,
    statement: Statement,
    params: Mapping[str, Any] | None = None,
    batch_size: int = 10_000,
    as_dicts: bool = True,
    format: str = "rows",
) -> Iterator[Any]:
    if format == "rows":
        return ops.stream(statement, params, batch_size, as_dicts)
    if format == "arrow":
        return stream_arrow(ops, statement, params, batch_size)
    raise InvalidInput(f"SQL: stream_query format must be 'rows' or 'arrow', not {format!r}")


if TYPE_CHECKING:

    class _StreamCall(Protocol):
        """``stream_query.fn``'s type: ``run``'s overloads without ``self``."""

        @overload
        def __call__(
            self,
            database: SqlDatabase,
            statement: Statement,
            params: Mapping[str, Any] | None = None,
            batch_size: int = 10_000,
            as_dicts: bool = True,
            format: Literal["rows"] = "rows",
        ) -> Iterator[list[Any]]: ...

        @overload
        def __call__(
            self,
            database: SqlDatabase,
            statement: Statement,
            params: Mapping[str, Any] | None = None,
            batch_size: int = 10_000,
            as_dicts: bool = True,
            *,
            format: Literal["arrow"],
        ) -> Iterator[pa.RecordBatch]: ...


class StreamQuery(SqlTask):
    """Yield a query's rows in batches of ``batch_size`` (lists of dicts, or tuples with
    ``as_dicts=False``) through a server-side cursor: memory stays flat for any row count.
    ``format="arrow"`` yields ``pyarrow.RecordBatch``es instead, typed from the columns
    (PostgreSQL through ADBC when installed; see the README's "Arrow and Parquet").

    A generator task: the task run lasts while you iterate. Opening the query is retried;
    after the first batch a failure raises instead of repeating rows. Consume it in the
    process that called it (a generator does not travel to another worker)."""

    lineage = sql_lineage.query_lineage

    @overload
    def run(
        self,
        database: SqlDatabase,
        statement: Statement,
        params: Mapping[str, Any] | None = None,
        batch_size: int = 10_000,
        as_dicts: bool = True,
        format: Literal["rows"] = "rows",
    ) -> Iterator[list[Any]]: ...

    @overload
    def run(
        self,
        database: SqlDatabase,
        statement: Statement,
        params: Mapping[str, Any] | None = None,
        batch_size: int = 10_000,
        as_dicts: bool = True,
        *,
        format: Literal["arrow"],
    ) -> Iterator[pa.RecordBatch]: ...

    def run(
        self,
        database: SqlDatabase,
        statement: Statement,
        params: Mapping[str, Any] | None = None,
        batch_size: int = 10_000,
        as_dicts: bool = True,
        format: Literal["rows", "arrow"] = "rows",
    ) -> Iterator[Any]:
        yield from _stream(self.ops(database), statement, params, batch_size, as_dicts, format)

    if TYPE_CHECKING:  # the base types calls from run; run is overloaded, so say it here

        @overload
        def __call__(
            self,
            database: SqlDatabase,
            statement: Statement,
            params: Mapping[str, Any] | None = None,
            batch_size: int = 10_000,
            as_dicts: bool = True,
            format: Literal["rows"] = "rows",
        ) -> Iterator[list[Any]]: ...

        @overload
        def __call__(
            self,
            database: SqlDatabase,
            statement: Statement,
            params: Mapping[str, Any] | None = None,
            batch_size: int = 10_000,
            as_dicts: bool = True,
            *,
            format: Literal["arrow"],
        ) -> Iterator[pa.RecordBatch]: ...

        def __call__(self, *args: Any, **kwargs: Any) -> Iterator[Any]: ...

        @property
        def fn(self) -> _StreamCall: ...

    def _make_fn(self) -> Callable[..., Any]:
        # The core wraps run() in a plain function; Prefect only runs a task as a generator
        # (task run open while the caller iterates) when its function is one, so wrap here
        # with the same lifecycle: the per-call policy, the hooks, never a leaked context.
        def fn(*args: Any, **kwargs: Any) -> Iterator[Any]:
            bound = self.signature.bind(*args, **kwargs)
            bound.apply_defaults()
            policy = bound.arguments.pop("retry_policy", None) or self.retry_policy
            relay = hook()
            policy = relay.flowport_retry_policy(task_name=self.name, policy=policy) or policy
            retrier = policy.bind(self.is_transient, self.name)
            with in_task(self.name, type(self)):
                relay.flowport_task_started(task_name=self.name, parameters=bound.arguments)
            started = time.perf_counter()
            arguments = dict(bound.arguments)
            database = arguments.pop("database")
            try:
                yield from _stream(self.ops(database, retrier), **arguments)
            except BaseException as exc:
                with in_task(self.name, type(self)):
                    relay.flowport_task_failed(
                        task_name=self.name, exception=exc, duration=time.perf_counter() - started
                    )
                raise
            with in_task(self.name, type(self)):
                relay.flowport_task_succeeded(
                    task_name=self.name, duration=time.perf_counter() - started
                )

        return self._label(fn, type(self).run)


def _rows_progress(description: str) -> Progress:
    progress = Progress(description, total=None, unit="rows")
    return progress


class BulkInsert(SqlTask):
    """Insert many rows fast: mappings, or sequences in ``columns`` order, from any iterable
    (streamed, ``batch_size`` at a time), or Arrow data (a pyarrow Table, RecordBatch or
    iterable of batches, cast to the column types). PostgreSQL (psycopg 3) uses ``COPY ...
    FROM STDIN`` (Arrow: ADBC bulk ingest when installed); other databases multi-row INSERT.
    Each batch is one transaction, retried whole and applied exactly once; a failure stops
    the load with earlier batches committed. Table and column names are checked against the
    reflected table. Rows are not hashed (no cache), nor walked by Prefect. Returns the
    number of rows inserted."""

    lineage = sql_lineage.insert_lineage

    payload_params = ("rows",)

    def run(
        self,
        database: SqlDatabase,
        table: str,
        rows: Iterable[Row] | Iterable[pa.RecordBatch] | pa.Table | pa.RecordBatch,
        columns: Sequence[str] | None = None,
        schema: str | None = None,
        batch_size: int = 50_000,
    ) -> int:
        ops = self.ops(database)
        started = time.perf_counter()
        with _rows_progress(f"bulk_insert into {table}") as progress:
            count = ops.bulk_insert(
                table,
                rows,
                columns=columns,
                schema=schema,
                batch_size=batch_size,
                on_batch=progress.advance,
            )
        _summary(self.name, database, ops.where, table, schema, count, started)
        return count


class Upsert(SqlTask):
    """Insert rows, or update the existing ones with the same ``key_columns`` (a primary key
    or unique constraint): ``ON CONFLICT`` on PostgreSQL and SQLite, ``ON DUPLICATE KEY
    UPDATE`` on MariaDB/MySQL. ``update_columns`` defaults to all non-key columns; ``[]``
    only inserts new keys. Each batch is one idempotent transaction. Rows are not hashed
    (no cache), nor walked by Prefect. Returns the number of rows processed."""

    lineage = sql_lineage.insert_lineage

    payload_params = ("rows",)

    def run(
        self,
        database: SqlDatabase,
        table: str,
        rows: Iterable[Row],
        key_columns: Sequence[str],
        update_columns: Sequence[str] | None = None,
        columns: Sequence[str] | None = None,
        schema: str | None = None,
        batch_size: int = 10_000,
    ) -> int:
        ops = self.ops(database)
        started = time.perf_counter()
        with _rows_progress(f"upsert into {table}") as progress:
            count = ops.upsert(
                table,
                rows,
                key_columns,
                update_columns=update_columns,
                columns=columns,
                schema=schema,
                batch_size=batch_size,
                on_batch=progress.advance,
            )
        _summary(self.name, database, ops.where, table, schema, count, started)
        return count


class Transaction(SqlTask):
    """Run several statements in one transaction, all or nothing: each item is SQL, or
    ``(SQL, params)``, or ``(SQL, [params, ...])``. The whole transaction is the unit of
    retry. Returns each statement's rowcount. Statements and their parameter lists are not
    walked by Prefect."""

    lineage = sql_lineage.transaction_lineage

    payload_params = ("statements",)

    def run(self, database: SqlDatabase, statements: Sequence[TxStatement]) -> list[int]:
        if isinstance(statements, str):
            statements = [statements]
        return self.ops(database).transaction(statements)


@dataclass(frozen=True)
class Exported:
    """What ``export_query`` wrote: the object's key, the rows and the object's size in bytes.

    A small object rather than a dict, so Prefect's run graph links only it to the task:
    a dict's keys (interned strings such as "rows") would draw false edges to any later
    task that is passed an equal string."""

    key: str
    rows: int
    size: int

    def __getitem__(self, name: str) -> Any:
        """``exported["rows"]`` (and ``"key"``, ``"bytes"``) for code written against the
        dict this task used to return."""
        fields = {"key": self.key, "rows": self.rows, "bytes": self.size}
        if name not in fields:
            raise KeyError(name)
        return fields[name]


class ExportQuery(SqlTask):
    """Stream a query's result into any flowport ObjectStore as CSV (with a header), JSON
    Lines or Parquet (typed from the columns; one row group of ``row_group_rows`` rows held
    at a time), never holding the result in memory. The whole export is the unit of retry
    (the object is rewritten from the start; the store publishes it only when complete).
    Returns an :class:`Exported` (key, rows, size)."""

    lineage = sql_lineage.export_lineage

    def run(
        self,
        database: SqlDatabase,
        statement: Statement,
        store: ObjectStore,
        key: str,
        format: str = "csv",
        params: Mapping[str, Any] | None = None,
        batch_size: int = 10_000,
        row_group_rows: int = ROW_GROUP_ROWS,
    ) -> Exported:
        fmt = _file_format(format)
        retrier = self.retrier
        ops = self.ops(database, retrier)
        # The stream's own retries would restart mid-object; the unit here is the export.
        inner = Database(ops.engine, ops.where, ops.system)
        started = time.perf_counter()

        def export() -> tuple[int, int]:
            if fmt == "parquet":
                schema, batches = open_arrow(inner, statement, params, batch_size)
                result = write_batches(
                    store, key, batches, "parquet", schema=schema, row_group_rows=row_group_rows
                )
                return result.bytes, result.rows
            counter = [0]
            info = store.put_stream(
                inner.export_chunks(statement, params, fmt, batch_size, counter=counter), key
            )
            return info.size, counter[0]

        size, rows = retrier(export)
        where = store.url_for(key)
        summarise(
            self.name,
            [
                {
                    "database": ops.where,
                    "object": where,
                    "rows": rows,
                    "bytes": size,
                    "seconds": round(time.perf_counter() - started, 3),
                }
            ],
            target=where,
        )
        return Exported(key=key, rows=rows, size=size)


class LoadFile(SqlTask):
    """Load a CSV (header line first; an empty field is NULL) or JSON Lines object from any
    flowport ObjectStore into ``table``, streamed and converted to the column types, through
    ``bulk_insert``'s batches (each one transaction, exactly once). A Parquet object is
    loaded in ONE transaction (all rows or none), streamed a row group at a time; a corrupt
    file or a column that does not fit the table raises InvalidInput naming it, with nothing
    loaded. Returns the rows loaded."""

    lineage = sql_lineage.load_lineage

    def run(
        self,
        database: SqlDatabase,
        store: ObjectStore,
        key: str,
        table: str,
        format: str = "csv",
        schema: str | None = None,
        batch_size: int = 50_000,
    ) -> int:
        fmt = _file_format(format)
        ops = self.ops(database)
        target = ops.reflect(table, schema)
        started = time.perf_counter()
        if fmt == "parquet":
            with _rows_progress(f"load {key} into {table}") as progress:
                count = load_arrow(
                    ops,
                    target,
                    lambda: read_batches(store, key, "parquet", batch_rows=batch_size),
                    store.url_for(key),
                )
                progress.advance(count)
            _summary(self.name, database, ops.where, table, schema, count, started)
            return count
        with store.open(key) as stream, _rows_progress(f"load {key} into {table}") as progress:
            count = ops.bulk_insert(
                table,
                ops.read_rows(stream, fmt, target),
                schema=schema,
                batch_size=batch_size,
                on_batch=progress.advance,
            )
        _summary(self.name, database, ops.where, table, schema, count, started)
        return count


def _file_format(fmt: str) -> str:
    """``csv``, ``jsonl`` or ``parquet`` (case-insensitive); InvalidInput otherwise."""
    value = str(fmt).lower()
    return value if value == "parquet" else check_format(value)


def table_url(database: SqlDatabase, table: str, schema: str | None = None) -> str:
    """``postgresql://host:port/db/schema.table``: where rows went, without user or password."""
    url = make_url(database.url) if database.url else None
    backend = url.get_backend_name() if url else database.dialect
    host = (url.host if url else database.host) or ""
    port = url.port if url else database.port
    name = (url.database if url else database.database) or ""
    qualified = f"{schema}.{table}" if schema else table
    return f"{backend}://{host}{f':{port}' if port else ''}/{name}/{qualified}"


def _summary(
    task_name: str,
    database: SqlDatabase,
    where: str,
    table: str,
    schema: str | None,
    rows: int,
    started: float,
) -> None:
    seconds = time.perf_counter() - started
    summarise(
        task_name,
        [
            {
                "database": where,
                "table": table,
                "rows": rows,
                "seconds": round(seconds, 3),
                "rows_per_second": int(rows / seconds) if seconds > 0 else None,
            }
        ],
        target=table_url(database, table, schema),
    )


execute = Execute()
execute_many = ExecuteMany()
fetch_one = FetchOne()
fetch_many = FetchMany()
fetch_all = FetchAll()
stream_query = StreamQuery()
bulk_insert = BulkInsert()
upsert = Upsert()
transaction = Transaction()
export_query = ExportQuery()
load_file = LoadFile()

__all__ = [
    "BulkInsert",
    "Execute",
    "ExecuteMany",
    "ExportQuery",
    "Exported",
    "FetchAll",
    "FetchMany",
    "FetchOne",
    "LoadFile",
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
