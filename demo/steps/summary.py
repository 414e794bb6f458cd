"""Stage 4: the lake read back with pyarrow (the files each store's state object names),
reduced to the latest version of every order, summarised by status, published as a Prefect
markdown artifact."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

import pyarrow as pa
import pyarrow.parquet as pq
from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from demo.steps.to_lake import PREFIX
from flowport.store import ObjectStore
from flowport.transfer import StoreSink


@dataclass(frozen=True)
class Summary:
    """What the lake holds: files and rows (every version), orders by status, and whether
    every store holds the same rows."""

    files: int
    rows: int
    orders: int
    by_status: list[tuple[str, int, Decimal]]
    stores_agree: bool

    def table(self) -> str:
        """The summary as a fixed-width text table."""
        lines = [f"{'status':<10} {'orders':>8} {'amount':>14}"]
        lines += [f"{s:<10} {n:>8,} {a:>14,.2f}" for s, n, a in self.by_status]
        total = sum((a for _, _, a in self.by_status), Decimal(0))
        lines.append(f"{'total':<10} {self.orders:>8,} {total:>14,.2f}")
        return "\n".join(lines)

    def markdown(self, run: int) -> str:
        rows = "\n".join(f"| {s} | {n:,} | {a:,.2f} |" for s, n, a in self.by_status)
        agree = "identical on every store" if self.stores_agree else "**stores differ**"
        return (
            f"### Orders after run {run}\n\n| status | orders | amount |\n|---|---:|---:|\n"
            f"{rows}\n\n{self.files} Parquet files, {self.rows:,} rows (every version of "
            f"{self.orders:,} orders), {agree}.\n"
        )


def read_lake(store: ObjectStore, name: str) -> pa.Table:
    """Every row of every committed file of transfer ``name``, read with pyarrow."""
    tables = []
    for key in StoreSink(store, PREFIX).files(name):
        with store.open(key) as fh:
            tables.append(pq.read_table(fh))
    return pa.concat_tables(tables)


def latest(versions: pa.Table) -> pa.Table:
    """The newest version of each order (the lake appends every changed row)."""
    newest = versions.group_by("order_id").aggregate([("updated_at", "max")])
    newest = newest.rename_columns({"updated_at_max": "updated_at"})
    return versions.join(newest, keys=["order_id", "updated_at"], join_type="inner")


@task(name="summarise-lake", cache_policy=NO_CACHE)  # stores hold clients: not hashable
def summarise_lake(stores: dict[str, ObjectStore], name: str, run: int) -> Summary:
    """Read the lake from every store, check they agree, summarise, publish an artifact."""
    tables = [read_lake(store, name) for store in stores.values()]
    first = tables[0].sort_by([("order_id", "ascending"), ("updated_at", "ascending")])
    agree = all(
        t.sort_by([("order_id", "ascending"), ("updated_at", "ascending")]).equals(first)
        for t in tables[1:]
    )
    current = latest(first)
    grouped = current.group_by("status").aggregate([("order_id", "count"), ("amount", "sum")])
    by_status = sorted(
        zip(
            grouped.column("status").to_pylist(),
            grouped.column("order_id_count").to_pylist(),
            grouped.column("amount_sum").to_pylist(),
            strict=True,
        )
    )
    files = len(StoreSink(next(iter(stores.values())), PREFIX).files(name))
    summary = Summary(files, first.num_rows, current.num_rows, by_status, agree)
    create_markdown_artifact(
        summary.markdown(run), key="flowport-demo-orders", description="The orders lake"
    )
    return summary
