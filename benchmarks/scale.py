"""Scale-out benchmark: partitioned PostgreSQL -> Parquet on S3 (``extract_partitioned``) on
one process and on a Dask cluster of 1 and 2 worker processes.

    python benchmarks/scale.py [--rows N] [--parts P] [--quick]   (from the repository root)

Starts PostgreSQL, the S3 gateway and a Dask cluster (``dask scheduler`` + ``dask worker``
processes, one thread each) from the harness, fills a table of N rows (bigint key, timestamp,
numeric, text, 64-byte bytea), then times, best of ``--repeat``:

  * ``extract_range`` of the whole table in this process, no Prefect: the single-stream limit,
  * the flow on a ``ThreadPoolTaskRunner`` (P parts, P threads in one process),
  * the flow on ``DaskTaskRunner(address=...)`` with 1 worker, then with 2 workers,
  * the per-part overhead: the flow with P parts over a table of P rows (no data to speak of),
    on Dask, divided by P.

Prints rows/s and MB/s (Parquet bytes written) and the 2-worker / 1-worker ratio. Needs
benchmarks/requirements-scale.txt.
"""

from __future__ import annotations

import argparse
import os
import time
import uuid
from collections.abc import Callable
from typing import Any

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")

from prefect import flow
from prefect.task_runners import ThreadPoolTaskRunner
from prefect.testing.utilities import prefect_test_harness
from prefect_dask import DaskTaskRunner

from flowport.keys import join_key
from flowport.partition import KeyRange, Manifest
from flowport_s3 import AwsCredentials, S3Bucket, S3Store
from flowport_sql import SqlDatabase
from flowport_sql.partitioned import extract_partitioned, extract_range
from flowport_testing.services import DaskCluster, Harness


def fill(dsn: str, table: str, rows: int) -> None:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            f"CREATE TABLE {table} (id bigint PRIMARY KEY, updated_at timestamptz, "
            "amount numeric(14,2), name text, payload bytea)"
        )
        conn.execute(
            f"INSERT INTO {table} SELECT g, timestamptz '2024-01-01' + g * interval '1 s', "
            "g * 1.25, 'customer-' || (g %% 5000), sha512(int8send(g)) "
            "FROM generate_series(1, %(n)s) g",
            {"n": rows},
        )
        conn.execute(f"ANALYZE {table}")


def best(label: str, repeat: int, fn: Callable[[], Any]) -> tuple[float, Any]:
    """Best wall time of ``repeat`` runs of ``fn`` (and its last result)."""
    times = []
    result = None
    for _ in range(repeat):
        started = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - started)
    print(f"  {label}: {', '.join(f'{t:.2f}' for t in times)} s")
    return min(times), result


@flow
def snapshot(db: SqlDatabase, table: str, bucket: S3Bucket, prefix: str, parts: int) -> Manifest:
    """The flow measured: at module level, so Dask pickles it by reference (a flow defined in
    a function is pickled by value with whatever it closes over)."""
    return extract_partitioned(db, table, "id", S3Store(bucket), prefix, partitions=parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--parts", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="100,000 rows, one run each")
    args = parser.parse_args()
    if args.quick:
        args.rows, args.repeat = 100_000, 1

    from flowport_s3 import S3Bucket, S3Store
    from flowport_sql import SqlDatabase

    harness = Harness()
    services = harness.up(["postgres", "s3"])
    pg, s3 = services["postgres"], services["s3"]
    # A cluster of its own (never a reused one): its workers' Prefect clients must point at
    # this run's Prefect server.
    cluster = DaskCluster()
    cluster.workers = 1
    try:
        cluster.start()
        table = f"scale_{uuid.uuid4().hex[:8]}"
        tiny = f"{table}_tiny"
        print(f"filling {args.rows:,} rows ...")
        fill(pg.dsn, table, args.rows)  # type: ignore[attr-defined]
        fill(pg.dsn, tiny, args.parts)  # type: ignore[attr-defined]
        bucket = f"scale-{uuid.uuid4().hex[:8]}"
        s3.client().create_bucket(Bucket=bucket)  # type: ignore[attr-defined]
        db = SqlDatabase(url=pg.sqlalchemy_url)  # type: ignore[attr-defined]

        creds = AwsCredentials(
            aws_access_key_id=s3.access_key,  # type: ignore[attr-defined]
            aws_secret_access_key=s3.secret_key,  # type: ignore[attr-defined]
            region_name=s3.region,  # type: ignore[attr-defined]
            endpoint_url=s3.endpoint_url,  # type: ignore[attr-defined]
            addressing_style="path",
        )
        target = S3Bucket(bucket_name=bucket, credentials=creds)

        results: dict[str, tuple[float, int]] = {}

        def run_flow(label: str, runner: Any, source: str = table) -> None:
            run = snapshot.with_options(task_runner=runner)
            prefix = join_key("bench", label.replace(" ", "-"))
            seconds, manifest = best(
                label, args.repeat, lambda: run(db, source, target, prefix, args.parts)
            )
            results[label] = (seconds, manifest.bytes)

        with prefect_test_harness(server_startup_timeout=180):
            print(f"{args.rows:,} rows, {args.parts} parts; wall seconds per run:")
            whole = KeyRange(0, None, None, nulls=True)
            seconds, part = best(
                "one stream, no Prefect",
                args.repeat,
                lambda: extract_range(
                    db, table, "id", whole, S3Store(target), "bench/one/part.parquet"
                ),
            )
            results["one stream, no Prefect"] = (seconds, part.bytes)
            run_flow("threads", ThreadPoolTaskRunner(max_workers=args.parts))
            run_flow("dask 1 worker", DaskTaskRunner(address=cluster.address))
            cluster.workers = 2
            cluster.start_worker(1)  # healthy again once the scheduler has both
            run_flow("dask 2 workers", DaskTaskRunner(address=cluster.address))
            tiny_seconds, _ = best(
                f"{args.parts} near-empty parts on 2 workers",
                args.repeat,
                lambda: snapshot.with_options(task_runner=DaskTaskRunner(address=cluster.address))(
                    db, tiny, target, "bench/tiny", args.parts
                ),
            )
        print()
        print(f"{'contender':<26} {'seconds':>8} {'rows/s':>10} {'MB/s':>7}")
        for label, (seconds, size) in results.items():
            print(
                f"{label:<26} {seconds:>8.2f} {args.rows / seconds:>10,.0f} "
                f"{size / seconds / 1e6:>7.1f}"
            )
        one, two = results["dask 1 worker"][0], results["dask 2 workers"][0]
        print(f"2 workers / 1 worker speed-up: {one / two:.2f}x")
        print(
            f"flow with {args.parts} near-empty parts on Dask: {tiny_seconds:.2f} s "
            f"({tiny_seconds / args.parts * 1000:.0f} ms per part, planning and manifest included)"
        )
        print(
            f"machine: {os.cpu_count()} CPUs (shared by the servers, the workers and this process)"
        )
    finally:
        cluster.close()
        harness.down()


if __name__ == "__main__":
    main()
