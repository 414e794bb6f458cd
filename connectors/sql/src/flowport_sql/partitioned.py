"""Partitioned SQL extraction: a table split by key ranges of one column into N Parquet parts,
one Prefect task each, plus a manifest (:mod:`flowport.partition`).

Call :func:`extract_partitioned` inside a flow; its parts run on the flow's task runner, so
the same flow spreads over threads or, with ``prefect_dask.DaskTaskRunner(address=...)``,
over a Dask cluster::

    @flow(task_runner=DaskTaskRunner(address="tcp://scheduler:8786"))
    def snapshot() -> Manifest:
        return extract_partitioned(db, "orders", "id", store, "lake/orders", partitions=8)

Each part reads ``lower <= key < upper`` (partition 0 also the NULL keys) ordered by the key,
through the same Arrow path as :class:`~flowport_sql.SqlQuerySource` (ADBC on PostgreSQL),
and streams it to ``<prefix>/part-<i>-of-<n>.parquet``. A part is one idempotent unit:
retried whole on transient database or store errors, and a part Dask runs again after
losing a worker overwrites the same key with the same rows.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Table, and_, func, or_, select

from flowport.errors import InvalidInput
from flowport.formats import ROW_GROUP_ROWS
from flowport.partition import (
    KeyRange,
    Manifest,
    PartResult,
    part_key,
    split_range,
    write_manifest_task,
    write_part,
)
from flowport.progress import run_logger
from flowport.retry import RetryPolicy
from flowport.store import ObjectStore
from flowport_sql.arrow import adbc_available, open_arrow
from flowport_sql.blocks import SqlDatabase
from flowport_sql.db import Database
from flowport_sql.tasks import SqlTask, table_url
from flowport_sql.transfer import _ops

#: Rows per Arrow batch read from the database.
BATCH_ROWS = 64 * 1024


def _table(db: Database, table: str, schema: str | None, column: str) -> Table:
    reflected = db.reflect(table, schema)
    if column not in reflected.c:
        raise InvalidInput(
            f"{db.where}: table {reflected.fullname!r} has no column {column!r} to partition by",
            target=table,
        )
    return reflected


def plan_ranges(
    database: SqlDatabase,
    table: str,
    column: str,
    partitions: int,
    *,
    schema: str | None = None,
    retry_policy: RetryPolicy | None = None,
) -> list[KeyRange]:
    """``min(column)``..``max(column)`` cut into ``partitions`` ranges of equal width (one
    range over everything when the column holds no value)."""
    db = _ops(database, retry_policy, "sql-plan")
    col = _table(db, table, schema, column).c[column]
    bounds = db.fetch(select(func.min(col).label("low"), func.max(col).label("high")), size=1)
    low, high = bounds[0]["low"], bounds[0]["high"]
    if low is None:
        return [KeyRange(0, None, None, nulls=True)]
    return split_range(low, high, partitions)


def extract_range(
    database: SqlDatabase,
    table: str,
    column: str,
    key_range: KeyRange,
    store: ObjectStore,
    key: str,
    *,
    schema: str | None = None,
    batch_rows: int = BATCH_ROWS,
    row_group_rows: int = ROW_GROUP_ROWS,
    compression: str | None = None,
    retry_policy: RetryPolicy | None = None,
) -> PartResult:
    """The rows of ``key_range`` (ordered by ``column``) streamed to ``key`` as Parquet; an
    empty range is an empty file with the table's schema."""
    db = _ops(database, retry_policy, "sql-extract")
    reflected = _table(db, table, schema, column)
    col = reflected.c[column]
    conditions = []
    params: dict[str, Any] = {}
    if key_range.lower is not None:
        conditions.append(col >= key_range.lower)
        params["flowport_low"] = key_range.lower
    if key_range.upper is not None:
        conditions.append(col < key_range.upper)
        params["flowport_high"] = key_range.upper
    statement: Any
    if adbc_available(db.engine):  # ADBC takes SQL text: quoted identifiers, bound values
        prep = db.engine.dialect.identifier_preparer
        quoted = prep.quote(column)
        where = [
            f"{quoted} {op} :{name}"
            for op, name in ((">=", "flowport_low"), ("<", "flowport_high"))
            if name in params
        ]
        names = ", ".join(prep.quote(c.name) for c in reflected.columns)
        sql = f"SELECT {names} FROM {prep.format_table(reflected)}"  # noqa: S608 (quoted)
        if where:
            clause = " AND ".join(where)
            if key_range.nulls:
                clause = f"({clause}) OR {quoted} IS NULL"
            sql += f" WHERE {clause}"
        statement = f"{sql} ORDER BY {quoted}"
    else:
        statement = select(reflected).order_by(col)
        params = {}
        if conditions:
            where_clause = and_(*conditions)
            statement = statement.where(
                or_(where_clause, col.is_(None)) if key_range.nulls else where_clause
            )
    arrow_schema, batches = open_arrow(db, statement, params, batch_rows, table=reflected)
    return write_part(
        store,
        key,
        batches,
        index=key_range.index,
        schema=arrow_schema,
        format="parquet",
        row_group_rows=row_group_rows,
        compression=compression,
        lower=key_range.lower,
        upper=key_range.upper,
    )


class PlanKeyRanges(SqlTask):
    """Cut ``column``'s ``min``..``max`` into ``partitions`` key ranges (one short query)."""

    def run(
        self,
        database: SqlDatabase,
        table: str,
        column: str,
        partitions: int,
        schema: str | None = None,
    ) -> list[KeyRange]:
        return plan_ranges(
            database, table, column, partitions, schema=schema, retry_policy=self.retry_policy
        )


class ExtractPartition(SqlTask):
    """Extract one key range of a table to one Parquet part (:func:`extract_range`): the
    whole part is the unit of retry, and a rerun overwrites the same key."""

    def run(
        self,
        database: SqlDatabase,
        table: str,
        column: str,
        key_range: KeyRange,
        store: ObjectStore,
        key: str,
        schema: str | None = None,
        batch_rows: int = BATCH_ROWS,
        row_group_rows: int = ROW_GROUP_ROWS,
        compression: str | None = None,
    ) -> PartResult:
        part = self.retrying(
            extract_range,
            database,
            table,
            column,
            key_range,
            store,
            key,
            schema=schema,
            batch_rows=batch_rows,
            row_group_rows=row_group_rows,
            compression=compression,
            retry_policy=RetryPolicy(attempts=1),  # the task's own retrier is the one
        )
        run_logger().info(
            "part %d %s: %d rows, %d bytes", part.index, store.url_for(key), part.rows, part.bytes
        )
        return part


plan_key_ranges = PlanKeyRanges()
extract_partition = ExtractPartition()


def extract_partitioned(
    database: SqlDatabase,
    table: str,
    column: str,
    store: ObjectStore,
    prefix: str,
    partitions: int = 4,
    *,
    schema: str | None = None,
    ranges: list[KeyRange] | None = None,
    batch_rows: int = BATCH_ROWS,
    row_group_rows: int = ROW_GROUP_ROWS,
    compression: str | None = None,
) -> Manifest:
    """Extract ``table`` to ``<prefix>/part-<i>-of-<n>.parquet``, one task per key range of
    ``column``, then write ``<prefix>/_flowport_state/manifest.json`` naming every part with
    its rows and SHA-256. Call inside a flow: the parts run on its task runner.

    ``ranges`` (e.g. :func:`flowport.partition.ranges_from_cuts` for skewed keys) replaces
    the equal-width plan; they must cover every key.
    """
    if ranges is None:
        # Every step on the task runner: the flow process never opens the database or the
        # store (a store that opened its client may not pickle to a distributed worker).
        plan = plan_key_ranges.submit(database, table, column, partitions, schema=schema)
        ranges = plan.result()
    total = len(ranges)
    futures = [
        extract_partition.submit(
            database,
            table,
            column,
            key_range,
            store,
            part_key(prefix, key_range.index, total),
            schema=schema,
            batch_rows=batch_rows,
            row_group_rows=row_group_rows,
            compression=compression,
        )
        for key_range in ranges
    ]
    parts = [future.result() for future in futures]
    source = table_url(database, table, schema)
    return write_manifest_task.submit(store, prefix, parts, source=source, column=column).result()


__all__ = [
    "ExtractPartition",
    "PlanKeyRanges",
    "extract_partition",
    "extract_partitioned",
    "extract_range",
    "plan_key_ranges",
    "plan_ranges",
]
