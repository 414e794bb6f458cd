"""Stage 3: PostgreSQL -> Parquet, incremental by ``updated_at``: each run extracts only the
rows changed since the mark the lake's state object holds, into a new file."""

from __future__ import annotations

from prefect.futures import PrefectFuture

from flowport.store import ObjectStore
from flowport.transfer import StoreSink, TransferResult
from flowport.transfer_tasks import run_transfer
from flowport_sql import SqlDatabase, SqlQuerySource

PREFIX = "lake/orders"


def to_lake(
    db: SqlDatabase, table: str, stores: dict[str, ObjectStore]
) -> dict[str, TransferResult]:
    """One incremental transfer per store, run concurrently; each store keeps its own mark."""
    source = SqlQuerySource(db, table=table, cursor="updated_at")
    futures: dict[str, PrefectFuture[TransferResult]] = {
        name: run_transfer.submit(source, StoreSink(store, PREFIX), table)
        for name, store in stores.items()
    }
    return {name: future.result() for name, future in futures.items()}
