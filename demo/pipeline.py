"""The demo pipeline: ``nox -s demo`` (or ``python -m demo.pipeline`` from the repo root).

Starts Kafka, PostgreSQL, the S3 gateway and the GCS emulator through the test harness on
127.0.0.1, then runs the orders flow (``demo/flow.py``) twice: orders produced to Kafka ->
upserted into PostgreSQL -> incrementally exported to Parquet on S3 and GCS -> read back with
pyarrow and summarised. The second run moves only the rows that changed.

    python -m demo.pipeline [--orders 5000] [--new 1000] [--updates 500] [--runs 2]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="flowport-demo-"))
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
# The temporary Prefect server may start slowly on a busy machine (20 s by default).
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")


def report(r: object) -> str:
    """A run's report as the lines the demo prints."""
    from demo.flow import RunReport

    assert isinstance(r, RunReport)
    moved = ", ".join(f"{rows:,} rows to {name}" for name, rows in r.moved.items())
    window = f"updated_at > {r.since}" if r.since != "None" else "first run: everything"
    return "\n".join(
        [
            f"run {r.run}: {r.produced:,} order messages produced to Kafka",
            f"  Kafka -> PostgreSQL: {r.upserted:,} rows upserted in {r.batches} transaction(s), "
            "offsets committed after each",
            f"  PostgreSQL -> Parquet: {moved} ({window})",
            f"  lake: {r.summary.files} file(s), {r.summary.rows:,} rows, "
            f"{r.summary.orders:,} orders, S3 and GCS "
            + ("identical" if r.summary.stores_agree else "DIFFER"),
            *("    " + line for line in r.summary.table().splitlines()),
        ]
    )


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=5_000, help="orders of the first run")
    parser.add_argument("--new", type=int, default=1_000, help="new orders of each later run")
    parser.add_argument("--updates", type=int, default=500, help="status changes per later run")
    parser.add_argument("--runs", type=int, default=2)
    args = parser.parse_args(argv)

    from demo.flow import SERVICES, connect, orders_pipeline
    from flowport_testing import Harness

    harness = Harness()
    try:
        env = {k: v for svc in harness.up(SERVICES).values() for k, v in svc.env().items()}
        lake = connect(env)
        try:
            first_id, reports = 1, []
            for run in range(1, args.runs + 1):
                new, updates = (args.orders, 0) if run == 1 else (args.new, args.updates)
                reports.append(orders_pipeline(lake, run, first_id, new, updates))
                first_id += new
                print(report(reports[-1]), flush=True)
        finally:
            lake.close()
    finally:
        harness.down()
    if len(reports) > 1:
        later = reports[-1]
        print(
            f"\nincremental: run {later.run} moved {min(later.moved.values()):,} of "
            f"{later.summary.orders:,} orders (only the {later.produced:,} new or changed); "
            "the summary is a Prefect markdown artifact 'flowport-demo-orders'"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
