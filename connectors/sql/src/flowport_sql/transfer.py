"""SQL sources and sinks for :func:`flowport.transfer.transfer`.

:class:`SqlQuerySource` extracts a table or a query as Arrow record batches, incrementally
by a cursor column; :class:`SqlTableSink` loads batches into a table and keeps each
transfer's high-water mark in a state table, ``flowport_state(name, upper_json,
updated_at)``, written in the same transaction as the rows it describes.

Commits. When the batches come ordered by a cursor column (a :class:`SqlQuerySource` with
``cursor=`` says which), the sink commits every ``commit_rows`` rows or so, each
transaction moving the mark to the largest cursor value it holds; a transaction never ends
inside a run of equal cursor values, so "everything up to the mark" is exactly what is
committed, and a rerun after a crash resumes there: nothing lost, nothing twice. Otherwise
(no cursor, or ``mode="replace"``) the whole extract is one transaction, streamed (memory
holds a batch, not the extract): a failure rolls it all back with the mark unmoved, and
``run_transfer`` retries a transient one whole, extracting again.

Appends to PostgreSQL go through ADBC bulk ingest (binary COPY from the Arrow buffers), with
the state row written on the same connection, in the same transaction; upserts and other
databases through SQLAlchemy.

Each transaction first reads (and locks) its state row; if the mark already equals the one
it is about to write, it committed before a lost connection and is not applied again, so
a retried transaction is exactly-once on every database.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Connection,
    Date,
    DateTime,
    Double,
    Float,
    Integer,
    LargeBinary,
    MetaData,
    Numeric,
    SmallInteger,
    String,
    Table,
    Text,
    Time,
    delete,
    select,
)
from sqlalchemy.dialects import mysql

from flowport.errors import InvalidInput, NotFound
from flowport.retry import NO_RETRY, RetryPolicy
from flowport.transfer import Extract, LoadResult, decode_cursor, encode_cursor
from flowport_sql import errors
from flowport_sql.adbc import AdbcConnection
from flowport_sql.arrow import (
    ArrowLoader,
    adbc_available,
    adbc_unit,
    open_arrow,
    pyarrow,
    python_rows,
)
from flowport_sql.blocks import SqlDatabase
from flowport_sql.db import Database

if TYPE_CHECKING:
    import pyarrow as pa

MODES = ("append", "upsert", "replace")
STATE_TABLE = "flowport_state"
#: The retry policy of sources and sinks unless given: the SQL tasks' (about 30 s).
DEFAULT_POLICY = RetryPolicy(attempts=100, initial_delay=0.5, max_delay=4.0, deadline=30.0)


@dataclass(frozen=True)
class CursorExtract(Extract):
    """An :class:`~flowport.transfer.Extract` whose batches are ordered by ``cursor``: a
    sink may commit part of it with the mark set to the largest cursor value committed."""

    cursor: str | None = None


def _ops(database: SqlDatabase, policy: RetryPolicy | None, name: str) -> Database:
    engine = database.engine()
    where, system = database.describe(), database.system
    if system == "MySQL" and getattr(engine.dialect, "is_mariadb", False):
        where, system = where.replace("MySQL", "MariaDB", 1), "MariaDB"
    retrier = (policy or DEFAULT_POLICY).bind(errors.is_transient, name)
    return Database(engine, where, system, retrier)


def _base_url(database: SqlDatabase) -> str:
    from flowport_sql.tasks import table_url

    return table_url(database, "x").rsplit("/", 1)[0]


@dataclass
class SqlQuerySource:
    """A table (``table``, ``schema``) or a ``query`` (``:name`` parameters from ``params``),
    read as Arrow record batches; with ``cursor`` incremental: ``extract(since)`` first fixes
    ``upper = max(cursor)``, then reads the rows with ``since < cursor <= upper`` ordered by
    the cursor. Rows whose cursor is NULL are never read incrementally.

    ``uri``: ``postgresql://host:port/db/schema.table``, or ``.../db?query=<sha256 prefix>``
    for a query; never a user name or password. Picklable: it holds the block, not an engine.
    """

    database: SqlDatabase
    table: str | None = None
    query: str | None = None
    schema: str | None = None
    cursor: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    batch_rows: int = 64 * 1024
    retry_policy: RetryPolicy | None = None
    uri: str = field(init=False)

    def __post_init__(self) -> None:
        if (self.table is None) == (self.query is None):
            raise InvalidInput("SqlQuerySource: give exactly one of table= or query=")
        if self.table is not None:
            from flowport_sql.tasks import table_url

            self.uri = table_url(self.database, self.table, self.schema)
        else:
            digest = hashlib.sha256(str(self.query).encode()).hexdigest()[:12]
            self.uri = f"{_base_url(self.database)}?query={digest}"

    def extract(self, since: Any = None) -> Extract:
        db = _ops(self.database, self.retry_policy, "sql-extract")
        prep = db.engine.dialect.identifier_preparer
        reflected: Table | None = None
        if self.table is not None:
            reflected = db.reflect(self.table, self.schema)
            names = [c.name for c in reflected.columns]
            source_sql = prep.format_table(reflected)
            select_list = ", ".join(prep.quote(n) for n in names)
        else:
            source_sql = f"({self.query}) AS flowport_q"
            select_list = "*"
        params = dict(self.params)
        if self.cursor is None:
            sql = f"SELECT {select_list} FROM {source_sql}"  # noqa: S608 (quoted identifiers)
            lower = upper = None
        else:
            if reflected is not None and self.cursor not in reflected.c:
                raise InvalidInput(
                    f"{db.where}: table {reflected.fullname!r} has no cursor column "
                    f"{self.cursor!r}",
                    target=self.uri,
                )
            col = prep.quote(self.cursor)
            top = f"SELECT max({col}) AS upper FROM {source_sql}"  # noqa: S608 (quoted)
            upper = db.fetch(top, params, size=1)[0]["upper"]
            lower = since
            if upper is None or (since is not None and upper <= since):
                return CursorExtract(iter(()), lower=since, upper=since, cursor=self.cursor)
            where = [f"{col} <= :flowport_upper"]
            params["flowport_upper"] = upper
            if since is not None:
                where.insert(0, f"{col} > :flowport_lower")
                params["flowport_lower"] = since
            sql = (  # identifiers quoted by the dialect; values bound
                f"SELECT {select_list} FROM {source_sql} WHERE {' AND '.join(where)} "  # noqa: S608
                f"ORDER BY {col}"
            )
        statement: Any = sql
        if reflected is not None and not adbc_available(db.engine):
            statement = self._typed(reflected, lower, upper)
        schema, batches = open_arrow(db, statement, params, self.batch_rows, table=reflected)
        if self.cursor is not None and schema is not None and self.cursor not in schema.names:
            raise InvalidInput(f"{self.uri}: the query has no column {self.cursor!r}")
        return CursorExtract(batches, lower=lower, upper=upper, cursor=self.cursor)

    def _typed(self, table: Table, lower: Any, upper: Any) -> Any:
        """The extraction as a SQLAlchemy select (typed columns) on the reflected table."""
        stmt = select(table)
        if self.cursor is not None:
            col = table.c[self.cursor]
            stmt = stmt.where(col <= upper).order_by(col)
            if lower is not None:
                stmt = stmt.where(col > lower)
        return stmt


# -- the sink --------------------------------------------------------------------------------


def sql_type_for(kind: pa.DataType, column: str, key: bool = False) -> Any:
    """A SQLAlchemy column type for an Arrow type (MariaDB/MySQL variants: microsecond
    DATETIME/TIME, LONGTEXT, LONGBLOB); InvalidInput naming ``column`` otherwise."""
    pa = pyarrow()
    t = pa.types
    if t.is_boolean(kind):
        return Boolean()
    if t.is_int8(kind) or t.is_int16(kind) or t.is_uint8(kind):
        return SmallInteger()
    if t.is_int32(kind) or t.is_uint16(kind):
        return Integer()
    if t.is_integer(kind):
        return BigInteger()
    if t.is_float32(kind) or t.is_float16(kind):
        return Float(precision=24)
    if t.is_floating(kind):
        return Double()
    if t.is_decimal(kind):
        return Numeric(kind.precision, kind.scale)
    if t.is_string(kind) or t.is_large_string(kind):
        if key:
            return String(255)
        return Text().with_variant(mysql.LONGTEXT(), "mysql", "mariadb")
    if t.is_binary(kind) or t.is_large_binary(kind) or t.is_fixed_size_binary(kind):
        return LargeBinary().with_variant(mysql.LONGBLOB(), "mysql", "mariadb")
    if t.is_timestamp(kind):
        return DateTime(timezone=kind.tz is not None).with_variant(
            mysql.DATETIME(fsp=6), "mysql", "mariadb"
        )
    if t.is_date(kind):
        return Date()
    if t.is_time(kind):
        return Time().with_variant(mysql.TIME(fsp=6), "mysql", "mariadb")
    raise InvalidInput(
        f"column {column!r}: Arrow type {kind} has no SQL column type here; create the table "
        "yourself (create=False) or cast the column",
        target=column,
    )


def _state_table(metadata: MetaData, name: str, schema: str | None) -> Table:
    return Table(
        name,
        metadata,
        Column("name", String(200), primary_key=True),
        Column("upper_json", Text(), nullable=True),
        Column("updated_at", DateTime(timezone=True), nullable=False),
        schema=schema,
    )


@dataclass
class SqlTableSink:
    """Loads record batches into ``table``: ``mode="append"``, ``"upsert"`` (by ``key``
    columns: a primary key or unique constraint) or ``"replace"`` (the table's rows are
    replaced by the extract's, in one transaction). ``create``: make the table from the
    Arrow schema when it is missing (upsert: ``key`` is its primary key).

    The mark of transfer ``name`` lives in ``state_table`` in the same transaction as the
    rows (see the module docstring for when a load commits in parts). Batches with a column
    the table lacks fail with InvalidInput naming it before anything is written; ``columns``
    loads only those (Kafka batches without their ``headers``, say).
    """

    database: SqlDatabase
    table: str
    schema: str | None = None
    mode: str = "append"
    key: list[str] | None = None
    create: bool = True
    state_table: str = STATE_TABLE
    commit_rows: int = 100_000
    retry_policy: RetryPolicy | None = None
    columns: list[str] | None = None
    uri: str = field(init=False)

    def __post_init__(self) -> None:
        from flowport_sql.tasks import table_url

        if self.mode not in MODES:
            raise InvalidInput(f"SqlTableSink: mode must be one of {MODES}, not {self.mode!r}")
        if isinstance(self.key, str):
            self.key = [self.key]
        if self.mode == "upsert" and not self.key:
            raise InvalidInput("SqlTableSink: mode='upsert' needs key= columns")
        if self.commit_rows < 1:
            raise InvalidInput("SqlTableSink: commit_rows must be at least 1")
        self.uri = table_url(self.database, self.table, self.schema)

    # -- state ----------------------------------------------------------------------

    def _ops(self) -> Database:
        return _ops(self.database, self.retry_policy, "sql-load")

    def _state(self, db: Database, create: bool) -> Table:
        state = _state_table(MetaData(), self.state_table, self.schema)
        if create:

            def work(conn: Connection) -> None:
                state.create(conn, checkfirst=True)

            db.unit(work, f"CREATE TABLE {self.state_table}", idempotent=True)
        return state

    def state(self, name: str) -> Any:
        """The mark of transfer ``name`` (``None`` before its first load)."""
        db = self._ops()
        state = self._state(db, create=False)

        def work(conn: Connection) -> Any:
            if not db.engine.dialect.has_table(conn, self.state_table, schema=self.schema):
                return None
            row = conn.execute(select(state.c.upper_json).where(state.c.name == name)).one_or_none()
            return None if row is None or row[0] is None else json.loads(row[0])

        return decode_cursor(db.read(work, f"SELECT FROM {self.state_table}"))

    # -- loading --------------------------------------------------------------------

    def load(self, extract: Extract, name: str) -> LoadResult:
        pa = pyarrow()
        db = self._ops()
        state = self._state(db, create=True)
        batches = iter(extract.batches)
        if self.columns is not None:
            batches = (self._selected(b) for b in batches)
        # A source without a cursor bound but with a label (Kafka: its offset ranges) is marked
        # by the label, so a replayed batch (crash before the offsets were committed) is
        # recognised as loaded, in append mode too.
        mark = extract.upper if extract.upper is not None else extract.label
        first = next((b for b in batches if b.num_rows), None)
        if first is None:
            if mark is not None:
                self._commit(db, state, name, None, [], mark, None, [], False)
            return LoadResult(rows=0, written=(self.uri,))
        target = self._target(db, first.schema)
        rows = 0
        cursor = getattr(extract, "cursor", None)

        def stream() -> Iterator[Any]:
            yield first
            for batch in batches:
                if batch.schema.names != first.schema.names:
                    extra = [n for n in batch.schema.names if n not in first.schema.names]
                    raise InvalidInput(
                        f"{self.uri}: schema drift within the extract: columns {extra} "
                        f"(expected {first.schema.names}); the transaction was rolled back",
                        target=self.uri,
                    )
                if batch.num_rows:
                    yield batch

        appender = None
        if self.mode != "upsert":
            appender = ArrowLoader(db, target, first.schema.names, self.uri)
        keep: list[AdbcConnection] = []  # one ADBC connection for every transaction of this load
        try:
            if cursor is None or cursor not in first.schema.names or self.mode == "replace":
                # One transaction, streamed (memory: a batch); it cannot be replayed from
                # here, so a transient failure rolls it back and propagates with the mark
                # unmoved, and run_transfer retries the whole transfer.
                once = _ops(self.database, NO_RETRY, "sql-load")
                replace = self.mode == "replace"
                rows = self._commit(
                    once, state, name, target, stream(), mark, appender, keep, replace
                )
                return LoadResult(rows=rows, written=(self.uri,))
            chunks = _cursor_chunks(pa, stream(), cursor, self.commit_rows, extract.upper)
            for part, mark in chunks:
                rows += self._commit(db, state, name, target, part, mark, appender, keep, False)
        finally:
            for conn in keep:
                with contextlib.suppress(Exception):
                    conn.close()
        return LoadResult(rows=rows, written=(self.uri,))

    def _selected(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        assert self.columns is not None
        missing = [c for c in self.columns if c not in batch.schema.names]
        if missing:
            raise InvalidInput(
                f"{self.uri}: the data has no column{'s' if len(missing) > 1 else ''} "
                f"{', '.join(repr(c) for c in missing)} that columns= names "
                f"(it has {batch.schema.names})",
                target=self.uri,
            )
        return batch.select(self.columns)

    def _target(self, db: Database, schema: pa.Schema) -> Table:
        """The target table, created from ``schema`` when missing (and allowed); checked to
        have every column of ``schema``."""
        try:
            table = db.reflect(self.table, self.schema)
        except NotFound:
            if not self.create:
                raise
            keys = set(self.key or [])
            missing = keys - set(schema.names)
            if missing:
                raise InvalidInput(
                    f"{self.uri}: key columns {sorted(missing)} are not in the data"
                ) from None
            columns = [
                Column(
                    f.name,
                    sql_type_for(f.type, f.name, key=f.name in keys),
                    primary_key=f.name in keys,
                    nullable=f.name not in keys,
                )
                for f in schema
            ]
            table = Table(self.table, MetaData(), *columns, schema=self.schema)

            def work(conn: Connection) -> None:
                table.create(conn, checkfirst=True)

            db.unit(work, f"CREATE TABLE {self.table}", idempotent=True)
            return db.reflect(self.table, self.schema)
        unknown = [n for n in schema.names if n not in table.c]
        if unknown:
            raise InvalidInput(
                f"{self.uri}: the data has column{'s' if len(unknown) > 1 else ''} "
                f"{', '.join(repr(n) for n in unknown)} that table {table.fullname!r} lacks "
                "(schema drift: the source changed since the table was made); nothing was "
                "written. Add the column to the table, or select the old columns.",
                target=self.uri,
            )
        return table

    def _commit(
        self,
        db: Database,
        state: Table,
        name: str,
        target: Table | None,
        parts: Iterable[pa.RecordBatch],
        mark: Any,
        appender: ArrowLoader | None,
        keep: list[AdbcConnection],
        replace: bool,
    ) -> int:
        """One transaction: (replace: delete every row), write ``parts``, set the mark. Appends
        to PostgreSQL go through ADBC ingest (binary COPY from the Arrow buffers), the state
        row on the same connection; elsewhere SQLAlchemy."""
        encoded = json.dumps(encode_cursor(mark))
        if target is not None and appender is not None and appender.method == "adbc":
            return self._commit_adbc(db, state, name, appender, parts, mark, keep, replace)
        upsert_stmt = None
        if target is not None and self.mode == "upsert":
            upsert_stmt = (target, db.columns(target, self.key))
        state_stmt = db._upsert_statement(
            state, [state.c.name], [state.c.upper_json, state.c.updated_at]
        )
        naive = db.dialect != "postgresql"
        now = dt.datetime.now(dt.timezone.utc)
        if naive:
            now = now.replace(tzinfo=None)

        def work(conn: Connection) -> int:
            current = conn.execute(
                select(state.c.upper_json).where(state.c.name == name).with_for_update()
            ).one_or_none()
            if mark is not None and current is not None and current[0] == encoded and not replace:
                return 0  # committed before a lost connection: not again (None marks nothing)
            count = 0
            if target is not None:
                if replace:
                    conn.execute(delete(target))
                if appender is not None:
                    count += appender.write(conn, parts)
                for batch in parts if upsert_stmt is not None else ():
                    count += self._upsert(db, conn, batch, naive, upsert_stmt)
            conn.execute(state_stmt, {"name": name, "upper_json": encoded, "updated_at": now})
            return count

        return int(db.unit(work, f"load into {self.uri}", idempotent=True))

    def _commit_adbc(
        self,
        db: Database,
        state: Table,
        name: str,
        appender: ArrowLoader,
        parts: Iterable[pa.RecordBatch],
        mark: Any,
        keep: list[AdbcConnection],
        replace: bool,
    ) -> int:
        """:meth:`_commit` on one ADBC connection: lock the state row, ingest, set the mark."""
        encoded = json.dumps(encode_cursor(mark))
        prep = db.engine.dialect.identifier_preparer
        st = prep.format_table(state)
        lock = f"SELECT upper_json FROM {st} WHERE name = $1 FOR UPDATE"  # noqa: S608 (quoted)
        save = (
            f"INSERT INTO {st} (name, upper_json, updated_at) VALUES ($1, $2, now()) "  # noqa: S608
            "ON CONFLICT (name) DO UPDATE SET upper_json = EXCLUDED.upper_json, "
            "updated_at = EXCLUDED.updated_at"
        )
        clear = f"DELETE FROM {prep.format_table(appender.target)}"  # noqa: S608 (quoted)

        def work(conn: AdbcConnection) -> int:
            current = conn.fetch(lock, (name,))
            again = mark is not None and current and current[0][0] == encoded
            if again and not replace:
                return 0  # committed before a lost connection: not again
            if replace:
                conn.execute(clear)
            count = appender.ingest(conn, parts)
            conn.execute(save, (name, encoded))
            return count

        return adbc_unit(db, work, f"load into {self.uri}", keep)

    def _upsert(
        self, db: Database, conn: Connection, batch: pa.RecordBatch, naive: bool, upsert: Any
    ) -> int:
        names = batch.schema.names
        rows = python_rows(batch, naive_utc=naive)
        table, keys = upsert
        cols = db.columns(table, names)
        params = [{c.key: v for c, v in zip(cols, row, strict=True)} for row in rows]
        updates = [c for c in cols if c.name not in {k.name for k in keys}]
        positions = [names.index(k.name) for k in keys]
        latest: dict[tuple[Any, ...], dict[str, Any]] = {}
        for row, param in zip(rows, params, strict=True):
            latest[tuple(row[i] for i in positions)] = param
        conn.execute(db._upsert_statement(table, keys, updates), list(latest.values()))
        return len(rows)


def _cursor_chunks(
    pa: Any, batches: Iterator[Any], cursor: str, limit: int, upper: Any
) -> Iterator[tuple[list[Any], Any]]:
    """Parts of about ``limit`` rows, each with the largest cursor value it holds; a part never
    ends inside a run of equal cursor values (the rows come ordered by the cursor). The last
    part's mark is ``upper``, the extract's bound."""
    import pyarrow.compute as pc

    pending: list[Any] = []
    rows = 0
    for batch in batches:
        pending.append(batch)
        rows += batch.num_rows
        if rows < limit:
            continue
        table = pa.Table.from_batches(pending)
        column = table.column(cursor)
        last = column[-1]
        tail = pc.sum(pc.equal(column, last)).as_py() or 0
        cut = table.num_rows - tail
        if cut == 0:  # one run of equal values so far: keep going
            continue
        yield table.slice(0, cut).to_batches(), column[cut - 1].as_py()
        pending = table.slice(cut).to_batches()
        rows = table.num_rows - cut
    if pending or upper is not None:
        mark = upper
        if mark is None and pending:
            mark = pa.Table.from_batches(pending).column(cursor)[-1].as_py()
        yield pending, mark


__all__ = ["CursorExtract", "SqlQuerySource", "SqlTableSink", "sql_type_for"]
