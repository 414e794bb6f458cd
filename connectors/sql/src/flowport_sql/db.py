"""The operations: plain Python over a SQLAlchemy engine, no Prefect imports.

The unit of retry is one transaction (:meth:`Database.unit`): it opens a connection, does
all of its work and commits, or is rolled back by the server when the connection drops, so
running it again is safe. The one ambiguous moment is a connection lost *during* COMMIT:
the server may have committed without the client hearing so. On PostgreSQL the unit records
its transaction id first and, before trying again, asks the server (``txid_status``) whether
that transaction committed; if it did, the unit is done. Elsewhere a non-idempotent unit
whose COMMIT lost its connection raises :class:`~flowport.errors.DeliveryError` instead of
risking a second application (upserts and reads are idempotent and simply run again).

Table and column names are never pasted into SQL: they are looked up in the reflected table
and quoted by the dialect. Values are always bound parameters.
"""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import decimal
import io
import json
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from itertools import chain, islice
from operator import itemgetter
from typing import Any, NoReturn, TypeVar

from sqlalchemy import Column, Connection, Engine, Executable, MetaData, Table, insert, text
from sqlalchemy import exc as sa_exc

from flowport.errors import DeliveryError, InvalidInput, NotFound, TransientError
from flowport_sql import errors

T = TypeVar("T")
Row = Mapping[str, Any] | Sequence[Any]
Statement = str | Executable
#: A statement of :meth:`Database.transaction`: SQL, or (SQL, parameters), or
#: (SQL, [parameters, ...]) for an executemany.
TxStatement = Statement | tuple[Statement, Mapping[str, Any] | Sequence[Mapping[str, Any]] | None]

#: How long to wait for a PostgreSQL transaction whose COMMIT lost its connection to leave
#: the "in progress" state before trying again later.
COMMIT_STATUS_WAIT = 10.0


#: PostgreSQL types whose binary COPY format psycopg 3 writes from the usual Python values:
#: bool, bytea, int8, int2, int4, text, float4, float8, varchar, date, time, timestamp,
#: timestamptz, numeric, uuid.
BINARY_COPY_OIDS = {16, 17, 20, 21, 23, 25, 700, 701, 1043, 1082, 1083, 1114, 1184, 1700, 2950}


class _BinaryUnfit(InvalidInput):
    """A value the binary COPY dumper of its column cannot write (then text COPY is used)."""


def _direct(fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    return fn(*args, **kwargs)


def as_statement(statement: Statement) -> Executable:
    """A SQL string as ``text()`` (``:name`` placeholders bind values); SQLAlchemy
    statements unchanged."""
    if isinstance(statement, str):
        if not statement.strip():
            raise InvalidInput("SQL: empty statement", system="SQL")
        return text(statement)
    if isinstance(statement, Executable):
        return statement
    raise InvalidInput(
        f"SQL: a statement must be a string or a SQLAlchemy statement, not "
        f"{type(statement).__name__}",
        system="SQL",
    )


def _driver_connection(conn: Connection) -> Any:
    return conn.connection.driver_connection


class Database:
    """One database's operations over ``engine``. ``retry(fn, *args)`` runs one unit under
    the caller's retry policy (a flowport ``Retrier``); ``where`` names the database in
    messages (``PostgreSQL database 'app' at db:5432``)."""

    def __init__(
        self,
        engine: Engine,
        where: str,
        system: str = "SQL",
        retry: Callable[..., Any] = _direct,
    ):
        self.engine = engine
        self.where = where
        self.system = system
        self.retry = retry
        self.dialect = engine.dialect.name
        #: The COPY format the last PostgreSQL bulk load ended with ("binary" or "text").
        self.copy_format: str | None = None
        #: Whether a unit whose COMMIT lost its connection can ask the server how it ended.
        self.tracks_commits = self.dialect == "postgresql"

    # -- errors ----------------------------------------------------------------------

    def error(self, exc: BaseException, statement: Any = None, params: Any = None) -> Exception:
        """``exc`` as a flowport error naming this database and the statement."""
        return errors.translate(exc, self.where, statement, params, system=self.system)

    def fail(self, exc: BaseException, statement: Any = None, params: Any = None) -> NoReturn:
        """Raise ``exc`` translated, chained to it (a flowport error is re-raised as is)."""
        err = self.error(exc, statement, params)
        if err is exc:
            raise exc
        raise err from exc

    # -- the unit of retry -----------------------------------------------------------

    def read(self, work: Callable[[Connection], T], statement: Any = None, params: Any = None) -> T:
        """Run read-only ``work(conn)`` as one retried unit (rolled back at the end)."""

        def attempt() -> T:
            try:
                with self.engine.connect() as conn:
                    return work(conn)
            except Exception as exc:
                self.fail(exc, statement, params)

        return self.retry(attempt)  # type: ignore[no-any-return]

    def unit(
        self,
        work: Callable[..., T],
        statement: Any = None,
        params: Any = None,
        *,
        idempotent: bool = False,
        **work_kwargs: Any,
    ) -> T:
        """Run ``work(conn)`` in one transaction, committed at the end; retried whole on
        transient errors, exactly once even when a COMMIT loses its connection (see the
        module docstring)."""
        pending: dict[str, Any] = {}  # survives attempts: xid and result of a lost COMMIT
        track = self.tracks_commits and not idempotent

        def attempt() -> T:
            if "xid" in pending and self._committed(pending["xid"]):
                return pending["result"]  # type: ignore[no-any-return]
            pending.clear()
            committing = False
            try:
                with self.engine.connect() as conn:
                    try:
                        xid = self._xid(conn) if track else None
                        result = work(conn, **work_kwargs)
                        if track:
                            pending.update(xid=xid, result=result)
                        committing = True
                        conn.commit()
                        return result
                    except BaseException:
                        self._invalidate_if_broken(conn)
                        raise
            except Exception as exc:
                if committing and not track and not idempotent and errors.is_disconnect(exc):
                    raise DeliveryError(
                        f"{self.where}: the connection dropped during COMMIT of "
                        f"'{errors.first_line(statement)}'; the server may or may not have "
                        "committed it, so it is not run again (check the target, then re-run "
                        "what is missing)",
                        system=self.system,
                        target=self.where,
                    ) from exc
                self.fail(exc, statement, params)

        return self.retry(attempt)  # type: ignore[no-any-return]

    def _xid(self, conn: Connection) -> Any:
        """What identifies the transaction ``conn`` is in: PostgreSQL's (64-bit) transaction
        id, which this assigns, and the server's start time (to notice a restart)."""
        xid, started = conn.exec_driver_sql(
            "SELECT txid_current(), pg_postmaster_start_time()"
        ).one()
        return int(xid), started

    def _committed(self, marker: Any) -> bool:
        """Whether the PostgreSQL transaction ``marker`` names committed; waits out 'in
        progress'. Raises DeliveryError when the server cannot tell for sure.

        After a crash, an id whose transaction left nothing durable in the WAL can be handed
        out again, so a 'committed' status after a restart is believed only when the id lies
        below the next id the server recovered (its end-of-recovery checkpoint says) - or
        when the restart was clean (its shutdown checkpoint covers every id handed out)."""
        xid, started = marker
        deadline = time.monotonic() + COMMIT_STATUS_WAIT
        while True:
            try:
                with self.engine.connect() as conn:
                    now_started = conn.exec_driver_sql("SELECT pg_postmaster_start_time()").scalar()
                    try:
                        status = conn.execute(text("SELECT txid_status(:x)"), {"x": xid}).scalar()
                    except sa_exc.DBAPIError as exc:
                        if "in the future" in str(exc.orig):
                            return False  # nothing of it reached the disk before a crash
                        raise
                    if status == "in progress" and now_started == started:
                        pass  # its backend is still finishing: ask again below
                    elif now_started == started or status != "committed":
                        if status is None:
                            raise self._unknown_commit(xid, "its status is no longer kept")
                        # After a restart 'aborted' / 'in progress' (a reused id) also mean
                        # that ours did not commit: a committed id is never handed out again.
                        return bool(status == "committed")
                    else:
                        return self._committed_before_restart(conn, xid, now_started)
            except Exception as exc:
                self.fail(exc, "SELECT txid_status(...)")
            if time.monotonic() > deadline:
                raise TransientError(
                    f"{self.where}: transaction {xid} is still in progress after its "
                    "connection dropped; will check again",
                    system=self.system,
                    target=self.where,
                )
            time.sleep(0.2)

    def _committed_before_restart(self, conn: Connection, xid: int, started: Any) -> bool:
        try:
            next_xid, at = conn.exec_driver_sql(
                "SELECT next_xid, checkpoint_time FROM pg_control_checkpoint()"
            ).one()
        except sa_exc.DBAPIError:
            raise self._unknown_commit(xid, "the server restarted") from None
        if at < started:  # a clean shutdown's checkpoint: ids were never reused
            return True
        if (at - started).total_seconds() > 30:  # not the end-of-recovery checkpoint
            raise self._unknown_commit(xid, "the server restarted")
        epoch, _, low = str(next_xid).partition(":")
        recovered = (int(epoch) << 32) | int(low)
        return xid < recovered

    def _unknown_commit(self, xid: int, why: str) -> DeliveryError:
        return DeliveryError(
            f"{self.where}: the connection dropped during COMMIT of transaction {xid} and "
            f"{why}, so whether it committed cannot be told; it is not run again (check the "
            "target, then re-run what is missing)",
            system=self.system,
            target=self.where,
        )

    @staticmethod
    def _invalidate_if_broken(conn: Connection) -> None:
        """A driver error raised outside SQLAlchemy (COPY) leaves SQLAlchemy unaware that the
        connection died; invalidate it so the pool does not hand it out again."""
        try:
            raw = _driver_connection(conn)
        except Exception:
            return
        if getattr(raw, "broken", False) or getattr(raw, "closed", False) is True:
            conn.invalidate()

    # -- statements ------------------------------------------------------------------

    def execute(self, statement: Statement, params: Mapping[str, Any] | None = None) -> int:
        """One statement in its own transaction; the number of rows it affected."""
        stmt = as_statement(statement)
        return self.unit(
            lambda conn: int(conn.execute(stmt, dict(params or {})).rowcount), statement, params
        )

    def execute_many(self, statement: Statement, seq_of_params: Sequence[Mapping[str, Any]]) -> int:
        """One statement for each parameter set (executemany), all in one transaction."""
        stmt = as_statement(statement)
        params = [dict(p) for p in seq_of_params]
        if not params:
            return 0
        return self.unit(lambda conn: int(conn.execute(stmt, params).rowcount), statement, params)

    def transaction(self, statements: Sequence[TxStatement]) -> list[int]:
        """Several statements, all or nothing; the rowcount of each."""
        plan: list[tuple[Executable, Any]] = []
        for item in statements:
            sql, params = item if isinstance(item, tuple) else (item, None)
            if isinstance(params, Mapping):
                params = dict(params)
            elif params is not None:
                params = [dict(p) for p in params]
            plan.append((as_statement(sql), params))

        def work(conn: Connection) -> list[int]:
            counts = []
            for stmt, params in plan:
                try:
                    counts.append(conn.execute(stmt, params).rowcount)
                except Exception as exc:
                    self.fail(exc, stmt, params)
            return counts

        first = plan[0][0] if plan else None
        return self.unit(work, first)

    # -- reads -----------------------------------------------------------------------

    @staticmethod
    def _shape(keys: Sequence[str], rows: Iterable[Any], as_dicts: bool) -> list[Any]:
        if as_dicts:
            return [dict(zip(keys, row, strict=True)) for row in rows]
        return [tuple(row) for row in rows]

    def fetch(
        self,
        statement: Statement,
        params: Mapping[str, Any] | None = None,
        size: int | None = None,
        as_dicts: bool = True,
    ) -> list[Any]:
        """Run a query and return its first ``size`` rows (all when ``None``). Each call
        runs the query afresh: no cursor survives between calls."""
        stmt = as_statement(statement)

        def work(conn: Connection) -> list[Any]:
            result = conn.execute(stmt, dict(params or {}))
            rows = result.fetchall() if size is None else result.fetchmany(size)
            return self._shape(list(result.keys()), rows, as_dicts)

        return self.read(work, statement, params)

    def stream(
        self,
        statement: Statement,
        params: Mapping[str, Any] | None = None,
        batch_size: int = 10_000,
        as_dicts: bool = True,
        on_open: Callable[[list[str], Any], None] | None = None,
    ) -> Iterator[list[Any]]:
        """Yield the result in batches of ``batch_size`` rows through a server-side cursor
        (PostgreSQL named cursor, MySQL unbuffered cursor): memory stays flat. ``on_open``
        is called with the column names and the DBAPI cursor once the query is open.

        Opening the query is retried; once a batch has been handed out, a failure raises
        (a :class:`TransientError` if it is one) rather than repeating rows."""
        if batch_size < 1:
            raise InvalidInput("SQL: batch_size must be at least 1", system=self.system)
        stmt = as_statement(statement)

        # PostgreSQL + psycopg, plain SQL: read the driver's named cursor directly. A text()
        # statement has no typed binds or result processors, so this is what SQLAlchemy
        # would do, minus its per-row Result machinery (about 4x faster).
        direct = (
            isinstance(statement, str)
            and self.dialect == "postgresql"
            and self.engine.dialect.driver == "psycopg"
        )

        def open_() -> tuple[Connection, Any, Sequence[Any], list[str]]:
            conn = self.engine.connect()
            try:
                if direct:
                    compiled = text(str(statement)).compile(dialect=self.engine.dialect)
                    cursor = _driver_connection(conn).cursor(name=f"flowport_{uuid.uuid4().hex}")
                    cursor.execute(str(compiled), compiled.construct_params(dict(params or {})))
                    keys = [d.name for d in cursor.description or ()]
                    if on_open is not None:
                        on_open(keys, cursor)
                    return conn, cursor, cursor.fetchmany(batch_size), keys
                result = conn.execution_options(stream_results=True, yield_per=batch_size).execute(
                    stmt, dict(params or {})
                )
                keys = list(result.keys())
                if on_open is not None:
                    on_open(keys, result.cursor)
                return conn, result, result.fetchmany(batch_size), keys
            except BaseException as exc:
                self._invalidate_if_broken(conn)
                conn.close()
                if isinstance(exc, Exception):
                    self.fail(exc, statement, params)
                raise

        conn, result, rows, keys = self.retry(open_)
        try:
            while rows:
                yield self._shape(keys, rows, as_dicts)
                try:
                    rows = result.fetchmany(batch_size)
                except Exception as exc:
                    self._invalidate_if_broken(conn)
                    self.fail(exc, statement, params)
        finally:
            if direct:
                with contextlib.suppress(Exception):  # a dead connection cannot close it
                    result.close()
            conn.close()

    # -- tables ----------------------------------------------------------------------

    def reflect(self, table: str, schema: str | None = None) -> Table:
        """The table as the database describes it; NotFound when it does not exist. The name
        is only ever used as a quoted identifier in catalogue lookups."""
        if not isinstance(table, str) or not table:
            raise InvalidInput(f"{self.where}: table name must be a non-empty string")
        qualified = f"{schema}.{table}" if schema else table

        def work(conn: Connection) -> Table:
            try:
                return Table(table, MetaData(), schema=schema, autoload_with=conn)
            except sa_exc.NoSuchTableError:
                raise NotFound(
                    f"{self.where}: table {qualified!r} not found",
                    system=self.system,
                    target=qualified,
                ) from None

        return self.read(work, f"reflect table {qualified!r}")

    def columns(self, table: Table, names: Sequence[str] | None) -> list[Column[Any]]:
        """The table's columns named ``names`` (all when ``None``); InvalidInput for a name
        the table lacks, so no unknown identifier ever reaches SQL."""
        if names is None:
            return list(table.columns)
        if isinstance(names, str):
            names = [names]
        out = []
        for name in names:
            if not isinstance(name, str) or name not in table.c:
                known = ", ".join(repr(c.name) for c in table.columns)
                raise InvalidInput(
                    f"{self.where}: table {table.fullname!r} has no column {name!r} "
                    f"(columns: {known})",
                    system=self.system,
                    target=table.fullname,
                )
            out.append(table.c[name])
        if len({c.name for c in out}) != len(out):
            raise InvalidInput(f"{self.where}: a column is named twice in {list(names)}")
        return out

    @staticmethod
    def _batches(
        rows: Iterable[Row], names: Sequence[str] | None, batch_size: int
    ) -> tuple[list[str] | None, Iterator[list[tuple[Any, ...]]]]:
        """Column names (from ``names`` or the first mapping row) and the rows as batches
        of tuples in that column order."""
        if batch_size < 1:
            raise InvalidInput("SQL: batch_size must be at least 1")
        it = iter(rows)
        first = next(it, None)
        if first is None:
            return (list(names) if names else None), iter(())
        if names is None:
            if not isinstance(first, Mapping):
                raise InvalidInput("SQL: rows given as sequences need 'columns'")
            names = list(first.keys())
        names = list(names)
        getter = itemgetter(*names) if len(names) > 1 else (lambda r: (r[names[0]],))

        width = len(names)

        def convert(chunk: list[Any], number: int) -> list[tuple[Any, ...]]:
            # Fast paths first (a whole batch of right-sized tuples, or of mappings); the
            # slow loop only runs to name the offending row.
            if all(type(row) is tuple and len(row) == width for row in chunk):
                return chunk
            if all(isinstance(row, Mapping) for row in chunk):
                try:
                    return [getter(row) for row in chunk]
                except KeyError:
                    pass
            batch = []
            for offset, row in enumerate(chunk):
                where = number + offset + 1
                if isinstance(row, Mapping):
                    try:
                        batch.append(getter(row))
                    except KeyError as exc:
                        raise InvalidInput(
                            f"SQL: row {where} has no value for column {exc}"
                        ) from None
                elif isinstance(row, str | bytes) or not isinstance(row, Sequence):
                    raise InvalidInput(f"SQL: row {where} is neither a mapping nor a sequence")
                elif len(row) != width:
                    raise InvalidInput(
                        f"SQL: row {where} has {len(row)} values for {width} columns"
                    )
                else:
                    batch.append(tuple(row))
            return batch

        def gen() -> Iterator[list[tuple[Any, ...]]]:
            number = 0
            chained = chain([first], it)
            while True:
                chunk = list(islice(chained, batch_size))
                if not chunk:
                    return
                yield convert(chunk, number)
                number += len(chunk)

        return names, gen()

    # -- bulk writes -----------------------------------------------------------------

    def bulk_insert(
        self,
        table: str,
        rows: Iterable[Row],
        *,
        columns: Sequence[str] | None = None,
        schema: str | None = None,
        batch_size: int = 50_000,
        on_batch: Callable[[int], None] | None = None,
    ) -> int:
        """Insert ``rows`` (mappings, or sequences in ``columns`` order) in batches, each
        batch one transaction (the unit of retry, applied exactly once). PostgreSQL with
        psycopg 3 streams each batch through ``COPY ... FROM STDIN``; other databases use
        executemany (multi-row INSERT / insertmanyvalues). ``rows`` may also be Arrow data (a
        pyarrow Table, RecordBatch or iterable of batches: see :func:`flowport_sql.arrow.
        insert_arrow`). Returns the rows inserted."""
        from flowport_sql.arrow import insert_arrow, is_arrow

        arrow = is_arrow(rows)
        if not arrow:  # an iterable of Arrow batches, or of rows
            it = iter(rows)
            head = next(it, None)
            arrow = is_arrow(head)
            rows = it if head is None else chain([head], it)
        if arrow:
            if batch_size < 1:
                raise InvalidInput("SQL: batch_size must be at least 1")
            target = self.reflect(table, schema)
            return insert_arrow(
                self, target, rows, columns=columns, batch_size=batch_size, on_batch=on_batch
            )
        names, batches = self._batches(rows, columns, batch_size)
        if names is None:
            return 0
        target = self.reflect(table, schema)
        cols = self.columns(target, names)
        if self.dialect == "postgresql" and self.engine.dialect.driver == "psycopg":
            return self._copy_batches(target, cols, batches, on_batch)
        stmt = insert(target)
        keys = [c.key for c in cols]
        total = 0
        for batch in batches:
            params = [dict(zip(keys, row, strict=True)) for row in batch]

            def work(conn: Connection, params: list[dict[str, Any]] = params) -> int:
                conn.execute(stmt, params)
                return len(params)

            total += self.unit(work, f"INSERT INTO {target.fullname}")
            if on_batch is not None:
                on_batch(len(batch))
        return total

    def pg_column_oids(self, target: Table) -> dict[str, int]:
        """PostgreSQL: the type OID of each column of ``target``."""
        table_sql = self.engine.dialect.identifier_preparer.format_table(target)

        def work(conn: Connection) -> dict[str, int]:
            found = conn.execute(
                text(
                    "SELECT attname, atttypid::int FROM pg_attribute WHERE attrelid = "
                    "CAST(:t AS regclass) AND attnum > 0 AND NOT attisdropped"
                ),
                {"t": table_sql},
            )
            return {name: oid for name, oid in found}

        return self.read(work, f"column types of {target.fullname}")

    def _copy_batches(
        self,
        target: Table,
        cols: list[Column[Any]],
        batches: Iterator[list[tuple[Any, ...]]],
        on_batch: Callable[[int], None] | None,
    ) -> int:
        """PostgreSQL: each batch one ``COPY ... FROM STDIN`` transaction. When every column
        has a type psycopg dumps natively, the binary format is used (the server parses no
        text: several times faster for numbers and timestamps); a batch whose values do not
        fit the binary dumpers (strings for a timestamp column, say) falls back to text COPY
        for the rest of the load."""
        prep = self.engine.dialect.identifier_preparer
        table_sql = prep.format_table(target)
        sql = f"COPY {table_sql} ({', '.join(prep.format_column(c) for c in cols)}) FROM STDIN"

        oids = self.pg_column_oids(target)
        types = [oids.get(c.name) for c in cols]
        binary = all(oid in BINARY_COPY_OIDS for oid in types)

        def work(conn: Connection, batch: list[tuple[Any, ...]], binary: bool) -> int:
            statement = f"{sql} (FORMAT BINARY)" if binary else sql
            with _driver_connection(conn).cursor() as cur, cur.copy(statement) as cp:
                write = cp.write_row
                if not binary:
                    for row in batch:
                        write(row)
                    return len(batch)
                try:
                    cp.set_types(types)
                    for row in batch:
                        write(row)
                except (TypeError, ValueError, OverflowError, ArithmeticError) as exc:
                    raise _BinaryUnfit(str(exc)) from exc
                except Exception as exc:
                    if type(exc).__name__ in ("DataError", "ProgrammingError"):
                        raise _BinaryUnfit(str(exc)) from exc
                    raise
            return len(batch)

        total = 0
        for batch in batches:
            if binary:
                try:
                    total += self.unit(work, sql, batch=batch, binary=True)
                except _BinaryUnfit:
                    binary = False  # rolled back; this batch and the rest go as text
            if not binary:
                total += self.unit(work, sql, batch=batch, binary=False)
            self.copy_format = "binary" if binary else "text"
            if on_batch is not None:
                on_batch(len(batch))
        return total

    def upsert(
        self,
        table: str,
        rows: Iterable[Row],
        key_columns: Sequence[str],
        *,
        update_columns: Sequence[str] | None = None,
        columns: Sequence[str] | None = None,
        schema: str | None = None,
        batch_size: int = 10_000,
        on_batch: Callable[[int], None] | None = None,
    ) -> int:
        """Insert or update by ``key_columns`` (which need a primary key or unique
        constraint): ``ON CONFLICT`` on PostgreSQL and SQLite, ``ON DUPLICATE KEY UPDATE``
        on MySQL/MariaDB. ``update_columns`` defaults to every non-key column given; an
        empty list inserts new keys only. Each batch is one idempotent transaction. Within a
        batch the last row of a key wins. Returns the rows processed."""
        if isinstance(key_columns, str):
            key_columns = [key_columns]
        if not key_columns:
            raise InvalidInput("SQL: upsert needs at least one key column")
        names, batches = self._batches(rows, columns, batch_size)
        if names is None:
            return 0
        target = self.reflect(table, schema)
        cols = self.columns(target, names)
        keys = self.columns(target, key_columns)
        if not {k.name for k in keys} <= {c.name for c in cols}:
            raise InvalidInput(f"{self.where}: every key column must be among the row columns")
        if update_columns is None:
            updates = [c for c in cols if c.name not in {k.name for k in keys}]
        else:
            updates = self.columns(target, update_columns)
        stmt = self._upsert_statement(target, keys, updates)
        positions = [names.index(k.name) for k in keys]
        total = 0
        for batch in batches:
            latest: dict[tuple[Any, ...], tuple[Any, ...]] = {}
            for row in batch:
                latest[tuple(row[i] for i in positions)] = row
            params = [{c.key: v for c, v in zip(cols, row, strict=True)} for row in latest.values()]

            def work(conn: Connection, params: list[dict[str, Any]] = params) -> int:
                conn.execute(stmt, params)
                return len(params)

            self.unit(work, f"upsert into {target.fullname}", idempotent=True)
            total += len(batch)
            if on_batch is not None:
                on_batch(len(batch))
        return total

    def _upsert_statement(
        self, target: Table, keys: list[Column[Any]], updates: list[Column[Any]]
    ) -> Any:
        if self.dialect in ("postgresql", "sqlite"):
            from sqlalchemy.dialects import postgresql, sqlite

            ins: Any = (
                postgresql.insert(target) if self.dialect == "postgresql" else sqlite.insert(target)
            )
            if not updates:
                return ins.on_conflict_do_nothing(index_elements=keys)
            return ins.on_conflict_do_update(
                index_elements=keys, set_={c.key: ins.excluded[c.key] for c in updates}
            )
        if self.dialect in ("mysql", "mariadb"):
            from sqlalchemy.dialects.mysql import insert as mysql_insert

            mins = mysql_insert(target)
            chosen = updates or keys[:1]  # "update nothing": set a key to itself
            return mins.on_duplicate_key_update({c.key: mins.inserted[c.key] for c in chosen})
        raise InvalidInput(
            f"{self.where}: upsert is supported on PostgreSQL, SQLite and MySQL/MariaDB, "
            f"not {self.dialect}",
            system=self.system,
        )

    # -- files -----------------------------------------------------------------------

    def export_chunks(
        self,
        statement: Statement,
        params: Mapping[str, Any] | None = None,
        fmt: str = "csv",
        batch_size: int = 10_000,
        chunk_bytes: int = 1024 * 1024,
        counter: list[int] | None = None,
    ) -> Iterator[bytes]:
        """The query result encoded as CSV (with a header) or JSON Lines, in chunks of about
        ``chunk_bytes``; rows are streamed, never all held. ``counter[0]`` counts rows."""
        fmt = check_format(fmt)
        buf = io.StringIO()
        header_done = False
        writer = csv.writer(buf, lineterminator="\n") if fmt == "csv" else None
        for batch in self.stream(statement, params, batch_size, as_dicts=True):
            if writer is not None:
                if not header_done:
                    writer.writerow(list(batch[0].keys()))
                    header_done = True
                writer.writerows([_csv_value(v) for v in row.values()] for row in batch)
            else:
                buf.write("".join(json.dumps(row, default=_json_default) + "\n" for row in batch))
            if counter is not None:
                counter[0] += len(batch)
            if buf.tell() >= chunk_bytes:
                yield buf.getvalue().encode()
                buf.seek(0)
                buf.truncate()
        if buf.tell():
            yield buf.getvalue().encode()

    def read_rows(
        self, stream: io.BufferedIOBase | Any, fmt: str, table: Table
    ) -> Iterator[dict[str, Any]]:
        """Rows of a CSV (header line first; an empty field is NULL) or JSON Lines file,
        converted to the types of ``table``'s columns."""
        fmt = check_format(fmt)
        reader = io.TextIOWrapper(stream, encoding="utf-8", newline="")  # type: ignore[type-var]
        converters = {c.name: _converter(c) for c in table.columns}
        if fmt == "csv":
            records: Iterator[dict[str, Any]] = csv.DictReader(reader)
        else:
            records = (json.loads(line) for line in reader if line.strip())
        for number, record in enumerate(records, start=1):
            try:
                yield {
                    name: (converters[name](value) if name in converters else value)
                    for name, value in record.items()
                }
            except (ValueError, TypeError, decimal.InvalidOperation) as exc:
                raise InvalidInput(
                    f"{self.where}: record {number} of the file does not fit table "
                    f"{table.fullname!r} ({type(exc).__name__})",
                    system=self.system,
                    target=table.fullname,
                ) from None


FORMATS = ("csv", "jsonl")


def check_format(fmt: str) -> str:
    """``csv`` or ``jsonl`` (case-insensitive); InvalidInput otherwise."""
    value = str(fmt).lower()
    if value not in FORMATS:
        raise InvalidInput(f"SQL: format must be one of {FORMATS}, not {fmt!r}")
    return value


def _csv_value(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    if isinstance(value, bool):
        return "true" if value else "false"
    return value


def _json_default(value: Any) -> Any:
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    if isinstance(value, uuid.UUID | dt.timedelta):
        return str(value)
    raise TypeError(f"cannot encode {type(value).__name__} as JSON")


def _parse_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text_value = str(value).strip().lower()
    if text_value in ("1", "true", "t", "yes", "y"):
        return True
    if text_value in ("0", "false", "f", "no", "n"):
        return False
    raise ValueError("not a boolean")


def _converter(column: Column[Any]) -> Callable[[Any], Any]:
    """From a CSV string (or JSON value) to the Python type the column expects; '' -> NULL."""
    try:
        python_type = column.type.python_type
    except NotImplementedError:
        python_type = str
    convert: Callable[[Any], Any]
    if python_type is bool:
        convert = _parse_bool
    elif python_type is int:
        convert = lambda v: v if isinstance(v, int) else int(str(v))  # noqa: E731
    elif python_type is float:
        convert = float
    elif python_type is decimal.Decimal:
        convert = lambda v: decimal.Decimal(str(v))  # noqa: E731
    elif python_type is dt.datetime:
        convert = lambda v: v if isinstance(v, dt.datetime) else dt.datetime.fromisoformat(v)  # noqa: E731
    elif python_type is dt.date:
        convert = lambda v: v if isinstance(v, dt.date) else dt.date.fromisoformat(v)  # noqa: E731
    elif python_type is dt.time:
        convert = lambda v: v if isinstance(v, dt.time) else dt.time.fromisoformat(v)  # noqa: E731
    elif python_type is bytes:
        convert = lambda v: v if isinstance(v, bytes) else bytes.fromhex(v)  # noqa: E731
    else:
        convert = lambda v: v  # noqa: E731

    def run(value: Any) -> Any:
        if value is None or value == "":
            return None
        return convert(value)

    return run
