"""Benchmark of flowport-sql against the harness's PostgreSQL.

    python benchmarks/sql.py [--quick]      (from the repository root)

Loads N rows of (int, text, float, timestamp) with
  * raw psycopg 3 ``COPY ... FROM STDIN`` (one transaction, write_row): the baseline,
 * the same in ``FORMAT BINARY`` with the column types set (what bulk_insert does per batch),
  * flowport ``bulk_insert`` (COPY per batch, each batch its own retried transaction),
  * prefect-sqlalchemy ``SqlAlchemyConnector.execute_many``,
  * pandas ``DataFrame.to_sql(method="multi")``,
then streams M rows with flowport ``stream_query`` (and a raw psycopg named cursor) in a
subprocess each, reporting rows/s and peak RSS (VmHWM), and last passes 50,000 rows as a list
to ``bulk_insert`` inside a Prefect flow (a task run; the rows are a payload parameter Prefect
does not walk) against ``bulk_insert.fn`` (no task run). ``--in-flow`` runs only that last
part. ``--arrow`` instead loads N rows given as a pyarrow Table: raw ADBC ingest and raw
psycopg binary COPY (the limits) against flowport ``bulk_insert`` through each of its two
PostgreSQL Arrow paths (ADBC ingest, psycopg binary COPY), which decides
``flowport_sql.arrow.PG_ARROW_LOAD``; then reads them back with ``stream_query(format=
"arrow")`` against a raw ADBC read. Needs benchmarks/requirements-sql.txt.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import subprocess
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

COLUMNS = ["id", "name", "score", "ts"]
DDL = "CREATE TABLE {t} (id BIGINT, name TEXT, score DOUBLE PRECISION, ts TIMESTAMP)"


def make_rows(n: int) -> list[tuple[Any, ...]]:
    t0 = dt.datetime(2024, 1, 1)
    sec = dt.timedelta(seconds=1)
    return [(i, f"name-{i:09d}", i * 0.5, t0 + i * sec) for i in range(n)]


def reset_table(dsn: str, table: str) -> None:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {table}")
        conn.execute(DDL.format(t=table))


def count(dsn: str, table: str) -> int:
    import psycopg

    with psycopg.connect(dsn) as conn:
        return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])  # type: ignore[index]


def timed(dsn: str, table: str, n: int, load: Callable[[], object]) -> float:
    reset_table(dsn, table)
    started = time.perf_counter()
    load()
    seconds = time.perf_counter() - started
    got = count(dsn, table)
    if got != n:
        raise SystemExit(f"{table}: expected {n} rows, found {got}")
    return seconds


# -- the contenders ---------------------------------------------------------------------


def raw_copy(dsn: str, table: str, rows: list[tuple[Any, ...]]) -> None:
    import psycopg

    with psycopg.connect(dsn) as conn, conn.cursor() as cur:
        with cur.copy(f"COPY {table} (id, name, score, ts) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        conn.commit()


def raw_copy_binary(dsn: str, table: str, rows: list[tuple[Any, ...]]) -> None:
    import psycopg

    with psycopg.connect(dsn) as conn, conn.cursor() as cur:
        with cur.copy(f"COPY {table} (id, name, score, ts) FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(["int8", "text", "float8", "timestamp"])
            for row in rows:
                copy.write_row(row)
        conn.commit()


def flowport_bulk_insert(url: str, table: str, rows: list[tuple[Any, ...]]) -> None:
    from flowport_sql import SqlDatabase, bulk_insert

    with SqlDatabase(url=url) as db:
        bulk_insert.fn(db, table, rows, columns=COLUMNS, batch_size=50_000)


def in_flow_vs_fn(url: str, dsn: str, n: int = 50_000, repeat: int = 3) -> None:
    """``bulk_insert(db, table, rows)`` inside a flow against ``bulk_insert.fn``: the best of
    ``repeat`` runs each, on an ephemeral Prefect server, same rows, same table shape."""
    import os
    import tempfile

    os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="flowport-bench-"))
    os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    from prefect import flow
    from prefect.testing.utilities import prefect_test_harness

    from flowport_sql import SqlDatabase, bulk_insert

    rows = [dict(zip(COLUMNS, r, strict=True)) for r in make_rows(n)]
    db = SqlDatabase(url=url)

    @flow
    def load(table: str) -> float:
        started = time.perf_counter()
        bulk_insert(db, table, rows)  # a task run; rows passed as a list
        return time.perf_counter() - started

    def direct() -> float:
        started = time.perf_counter()
        bulk_insert.fn(db, "bench_fn", rows)
        return time.perf_counter() - started

    with prefect_test_harness(server_startup_timeout=180):
        in_flow, plain = [], []
        for _ in range(repeat):
            reset_table(dsn, "bench_flow")
            in_flow.append(load("bench_flow"))
            reset_table(dsn, "bench_fn")
            plain.append(direct())
        if count(dsn, "bench_flow") != n or count(dsn, "bench_fn") != n:
            raise SystemExit("in-flow benchmark: row counts differ")
    db.dispose()
    flow_s, fn_s = min(in_flow), min(plain)
    print(f"\nbulk_insert of {n:,} rows passed as a list (best of {repeat})")
    print(f"{'call':34} {'seconds':>9} {'vs .fn':>8}")
    print(f"{'bulk_insert.fn (no task run)':34} {fn_s:9.2f} {1.0:7.2f}x")
    print(f"{'bulk_insert(...) inside a flow':34} {flow_s:9.2f} {flow_s / fn_s:7.2f}x")
    with __import__("psycopg").connect(dsn, autocommit=True) as conn:
        for table in ("bench_flow", "bench_fn"):
            conn.execute(f"DROP TABLE IF EXISTS {table}")


def prefect_execute_many(url: str, table: str, dict_rows: list[dict[str, Any]]) -> None:
    from prefect_sqlalchemy import SqlAlchemyConnector

    with SqlAlchemyConnector(connection_info=url) as connector:
        connector.execute_many(
            f"INSERT INTO {table} (id, name, score, ts) VALUES (:id, :name, :score, :ts)",
            seq_of_parameters=dict_rows,
        )


def pandas_to_sql(url: str, table: str, frame: Any) -> None:
    from sqlalchemy import create_engine

    engine = create_engine(url)
    # 4 columns x 10,000 rows = 40,000 parameters per INSERT (PostgreSQL allows 65,535).
    frame.to_sql(table, engine, if_exists="append", index=False, method="multi", chunksize=10_000)
    engine.dispose()


# -- Arrow ---------------------------------------------------------------------------------


def arrow_table(n: int) -> Any:
    import pyarrow as pa

    ids = pa.array(range(n), pa.int64())
    return pa.table(
        {
            "id": ids,
            "name": pa.array([f"name-{i:09d}" for i in range(n)], pa.large_string()),
            "score": pa.array([i * 0.5 for i in range(n)], pa.float64()),
            "ts": ids.cast(pa.timestamp("s")).cast(pa.timestamp("us")),
        }
    )


def raw_adbc_ingest(dsn: str, table: str, data: Any) -> None:
    import adbc_driver_postgresql.dbapi as adbc

    with adbc.connect(dsn) as conn, conn.cursor() as cur:
        cur.adbc_ingest(table, data, mode="append")
        conn.commit()


def raw_copy_arrow(dsn: str, table: str, data: Any) -> None:
    """psycopg binary COPY of the table's values, converted column by column."""
    import psycopg

    with psycopg.connect(dsn) as conn, conn.cursor() as cur:
        with cur.copy(f"COPY {table} (id, name, score, ts) FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(["int8", "text", "float8", "timestamp"])
            for batch in data.to_batches():
                for row in zip(*(c.to_pylist() for c in batch.columns), strict=True):
                    copy.write_row(row)
        conn.commit()


def flowport_arrow(url: str, table: str, data: Any, method: str | None) -> None:
    from flowport_sql import SqlDatabase, bulk_insert
    from flowport_sql.arrow import insert_arrow
    from flowport_sql.tasks import bulk_insert as task

    with SqlDatabase(url=url) as db:
        if method is None:
            bulk_insert.fn(db, table, data, batch_size=50_000)
            return
        ops = task.ops(db)
        insert_arrow(ops, ops.reflect(table), data, batch_size=50_000, method=method)


def arrow_read(url: str, dsn: str, table: str, n: int, repeat: int = 3) -> dict[str, float]:
    """Best seconds to read ``table`` as Arrow: raw ADBC, flowport stream_query(format="arrow")."""
    import adbc_driver_postgresql.dbapi as adbc

    from flowport_sql import SqlDatabase, stream_query

    sql = f"SELECT id, name, score, ts FROM {table}"

    def raw() -> int:
        with adbc.connect(dsn) as conn, conn.cursor() as cur:
            cur.execute(sql)
            return sum(b.num_rows for b in cur.fetch_record_batch())

    def ours() -> int:
        with SqlDatabase(url=url) as db:
            return sum(b.num_rows for b in stream_query.fn(db, sql, format="arrow"))

    out: dict[str, float] = {}
    for _ in range(repeat):
        for name, read in (
            ("raw ADBC fetch_record_batch", raw),
            ('flowport stream_query(format="arrow")', ours),
        ):
            started = time.perf_counter()
            rows = read()
            seconds = time.perf_counter() - started
            if rows != n:
                raise SystemExit(f"arrow read {name}: {rows} rows, expected {n}")
            out[name] = min(seconds, out.get(name, seconds))
    return out


def arrow_bench(url: str, dsn: str, n: int, version: str, repeat: int = 3) -> None:
    """The ``--arrow`` comparison (see the module docstring), all in this one run: each
    contender ``repeat`` times, taking turns, best time kept (the box is shared)."""
    import adbc_driver_postgresql.dbapi  # noqa: F401  (import everything before timing)

    from flowport_sql import arrow as flowport_arrow_module

    data = arrow_table(n)
    contenders: list[tuple[str, str, Callable[[str], object]]] = [
        ("raw ADBC adbc_ingest", "bench_a_adbc", lambda t: raw_adbc_ingest(dsn, t, data)),
        ("raw psycopg binary COPY", "bench_a_copy", lambda t: raw_copy_arrow(dsn, t, data)),
        (
            "flowport bulk_insert via ADBC",
            "bench_a_fadbc",
            lambda t: flowport_arrow(url, t, data, "adbc"),
        ),
        (
            "flowport bulk_insert via COPY",
            "bench_a_fcopy",
            lambda t: flowport_arrow(url, t, data, "copy"),
        ),
    ]
    tables = [table for _, table, _ in contenders]
    results: dict[str, float] = {}
    for _ in range(repeat):
        for name, table, load in contenders:
            seconds = timed(dsn, table, n, partial(load, table))
            results[name] = min(seconds, results.get(name, seconds))
            print(f"  {name}: {n / seconds:,.0f} rows/s", file=sys.stderr)
    adbc, copy = results["raw ADBC adbc_ingest"], results["raw psycopg binary COPY"]
    print(
        f"\nLoad {n:,} rows from a pyarrow Table (int8, text, float8, timestamp), PG {version}, "
        f"best of {repeat}"
    )
    print(f"{'contender':34} {'seconds':>9} {'rows/s':>12} {'vs raw ADBC':>12} {'vs raw COPY':>12}")
    for name, seconds in results.items():
        print(
            f"{name:34} {seconds:9.2f} {n / seconds:12,.0f} {adbc / seconds:11.2f}x "
            f"{copy / seconds:11.2f}x"
        )
    faster = (
        "adbc"
        if results["flowport bulk_insert via ADBC"] <= results["flowport bulk_insert via COPY"]
        else "copy"
    )
    default = flowport_arrow_module.PG_ARROW_LOAD
    print(f"faster flowport path: {faster}; flowport_sql.arrow.PG_ARROW_LOAD = {default!r}")
    if faster != default:
        print("  -> PG_ARROW_LOAD should change", file=sys.stderr)

    reads = arrow_read(url, dsn, "bench_a_fadbc", n)
    raw_read = reads["raw ADBC fetch_record_batch"]
    print(f"\nRead the {n:,} rows back as Arrow record batches")
    print(f"{'reader':34} {'seconds':>9} {'rows/s':>12} {'vs raw ADBC':>12}")
    for name, seconds in reads.items():
        print(f"{name:34} {seconds:9.2f} {n / seconds:12,.0f} {raw_read / seconds:11.2f}x")
    with __import__("psycopg").connect(dsn, autocommit=True) as conn:
        for table in tables:
            conn.execute(f"DROP TABLE IF EXISTS {table}")


# -- streaming, each in its own process so VmHWM is its own ------------------------------

STREAM_CHILD = r"""
import json, sys, time, resource
sys.path.insert(0, {root!r})
mode, url, dsn, table, batch = sys.argv[1:6]
batch = int(batch)

def hwm_mb():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

rows = 0
if mode == "baseline":
    from flowport_sql import SqlDatabase, fetch_one
    db = SqlDatabase(url=url)
    fetch_one.fn(db, "SELECT 1")
    started = time.perf_counter()
elif mode == "flowport":
    from flowport_sql import SqlDatabase, fetch_one, stream_query
    db = SqlDatabase(url=url)
    fetch_one.fn(db, "SELECT 1")
    started = time.perf_counter()
    for part in stream_query.fn(db, f"SELECT id, name, score, ts FROM {{table}}",
                                batch_size=batch, as_dicts=True):
        rows += len(part)
else:
    import psycopg
    conn = psycopg.connect(dsn)
    started = time.perf_counter()
    with conn.cursor(name="bench") as cur:
        cur.itersize = batch
        cur.execute(f"SELECT id, name, score, ts FROM {{table}}")
        while part := cur.fetchmany(batch):
            rows += len(part)
seconds = time.perf_counter() - started
print(json.dumps({{"rows": rows, "seconds": seconds, "hwm_mb": hwm_mb()}}))
"""


def stream_in_child(mode: str, url: str, dsn: str, table: str, batch: int) -> dict[str, Any]:
    code = STREAM_CHILD.format(root=str(ROOT))
    out = subprocess.run(
        [sys.executable, "-c", code, mode, url, dsn, table, str(batch)],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes (< 1 min)")
    parser.add_argument(
        "--in-flow", action="store_true", help="only bulk_insert inside a flow against .fn"
    )
    parser.add_argument(
        "--arrow", action="store_true", help="only Arrow loads and reads (ADBC vs COPY)"
    )
    args = parser.parse_args()
    n_load = 20_000 if args.quick else 1_000_000
    n_stream = 200_000 if args.quick else 5_000_000

    from flowport_testing.services import Harness, running

    reused = running("postgres") is not None
    harness = Harness()
    pg = harness.up(["postgres"])["postgres"]
    url, dsn = pg.sqlalchemy_url, pg.dsn  # type: ignore[attr-defined]
    try:
        if args.in_flow:
            in_flow_vs_fn(url, dsn)
            return
        if args.arrow:
            arrow_bench(url, dsn, n_load, pg.version)
            return
        # Import everything before timing anything (importing Prefect alone takes seconds).
        import pandas as pd
        import prefect_sqlalchemy  # noqa: F401
        import psycopg
        import sqlalchemy  # noqa: F401

        import flowport_sql  # noqa: F401

        rows = make_rows(n_load)
        dict_rows = [dict(zip(COLUMNS, r, strict=True)) for r in rows]
        frame = pd.DataFrame(rows, columns=COLUMNS)
        results: dict[str, float] = {}
        contenders: list[tuple[str, Callable[[], object]]] = [
            ("raw psycopg COPY", lambda: raw_copy(dsn, "bench_raw", rows)),
            (
                "raw psycopg COPY (FORMAT BINARY)",
                lambda: raw_copy_binary(dsn, "bench_rawbin", rows),
            ),
            ("flowport bulk_insert", lambda: flowport_bulk_insert(url, "bench_flowport", rows)),
            (
                "prefect-sqlalchemy execute_many",
                lambda: prefect_execute_many(url, "bench_prefect", dict_rows),
            ),
            ("pandas to_sql(method='multi')", lambda: pandas_to_sql(url, "bench_pandas", frame)),
        ]
        tables = ["bench_raw", "bench_rawbin", "bench_flowport", "bench_prefect", "bench_pandas"]
        for (name, load), table in zip(contenders, tables, strict=True):
            results[name] = timed(dsn, table, n_load, load)
            print(f"  {name}: {n_load / results[name]:,.0f} rows/s", file=sys.stderr)

        raw = results["raw psycopg COPY"]
        many = results["prefect-sqlalchemy execute_many"]
        print(f"\nLoad {n_load:,} rows (int, text, float, timestamp) into PostgreSQL {pg.version}")
        print(
            f"{'contender':34} {'seconds':>9} {'rows/s':>12} {'vs raw COPY':>12} "
            f"{'vs execute_many':>16}"
        )
        for name, seconds in results.items():
            print(
                f"{name:34} {seconds:9.2f} {n_load / seconds:12,.0f} {raw / seconds:11.2f}x "
                f"{many / seconds:15.2f}x"
            )

        # Streaming: a server-side table of n_stream rows, read by child processes.

        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("DROP TABLE IF EXISTS bench_stream")
            conn.execute(
                "CREATE TABLE bench_stream AS SELECT g::bigint AS id, 'name-' || g AS name, "
                "g * 0.5::float8 AS score, timestamp '2024-01-01' + g * interval '1 second' AS ts "
                f"FROM generate_series(1, {n_stream}) AS g"
            )
        base = stream_in_child("baseline", url, dsn, "bench_stream", 10_000)
        ours = stream_in_child("flowport", url, dsn, "bench_stream", 10_000)
        theirs = stream_in_child("raw", url, dsn, "bench_stream", 10_000)
        if ours["rows"] != n_stream or theirs["rows"] != n_stream:
            raise SystemExit(f"stream rows: flowport {ours['rows']}, raw {theirs['rows']}")
        print(f"\nStream {n_stream:,} rows in batches of 10,000 (each in its own process)")
        print(f"{'reader':34} {'seconds':>9} {'rows/s':>12} {'vs raw':>8} {'peak RSS':>10}")
        print(
            f"{'(process after imports + connect)':34} {'':>9} {'':>12} {'':>8} "
            f"{base['hwm_mb']:8.0f}MB"
        )
        for name, res in (
            ("flowport stream_query (dicts)", ours),
            ("raw psycopg named cursor", theirs),
        ):
            print(
                f"{name:34} {res['seconds']:9.2f} {res['rows'] / res['seconds']:12,.0f} "
                f"{theirs['seconds'] / res['seconds']:7.2f}x {res['hwm_mb']:8.0f}MB"
            )
        print(
            "\ntargets: bulk_insert >= 5x execute_many: "
            f"{many / results['flowport bulk_insert']:.1f}x; "
            f">= 0.8x raw COPY: {raw / results['flowport bulk_insert']:.2f}x; "
            f"stream peak RSS < 200 MB: {ours['hwm_mb']:.0f} MB"
        )
        with psycopg.connect(dsn, autocommit=True) as conn:
            for table in [*tables, "bench_stream"]:
                conn.execute(f"DROP TABLE IF EXISTS {table}")
        in_flow_vs_fn(url, dsn)
    finally:
        if not reused:  # never stop a server someone else started
            harness.down()


if __name__ == "__main__":
    main()
