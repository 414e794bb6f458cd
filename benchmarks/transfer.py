"""Transfer benchmark: flowport against dlt, pandas and raw ADBC, on the harness's servers.

    python benchmarks/transfer.py [--rows 1000000] [--rounds 1] [--only NAME,...]
                                  [--kafka-messages 1000000 | --no-kafka]

1. PostgreSQL -> Parquet, a table of N rows (bigint, timestamptz, text, double, integer,
   text), into a local directory and into a bucket on the S3 gateway:

   * ``flowport``: ``run_transfer`` (task body) of ``SqlQuerySource`` -> ``StoreSink``,
   * ``dlt-pyarrow`` / ``dlt-connectorx``: dlt ``sql_database`` with that backend -> the
     ``filesystem`` destination, ``loader_file_format="parquet"``,
   * ``pandas``: ``read_sql(chunksize=100_000)`` -> ``pyarrow.Table.from_pandas`` ->
     ``ParquetWriter``,
   * ``raw-adbc``: ADBC (``adbc-driver-postgresql``) ``fetch_record_batch`` ->
     ``pyarrow.parquet.ParquetWriter``: the limit.

   The raw and pandas writers use zstd like flowport's default; S3 writes go through
   ``pyarrow.fs.S3FileSystem`` (dlt: its own s3fs).

2. Parquet -> PostgreSQL, the raw contender's file into an empty table: flowport
   ``load_file(format="parquet")`` and ``run_transfer(StoreSource -> SqlTableSink)`` against
   raw ADBC ``adbc_ingest`` (binary COPY).

3. Kafka -> Parquet on S3: ``benchmarks/kafka.py --transfer`` (its own table).

Every contender runs in its own child process (so its peak RSS, VmHWM, is its own; the
children's own children count too), timed after its imports; each output is checked
afterwards (Parquet row counts read back, ``count(*)``). Prints seconds, rows/s, the ratio to
raw and to dlt's fastest backend (throughput: higher is better) and RSS: after the imports
(base) and the peak. Needs
benchmarks/requirements-transfer.txt and every connector (``nox -s bench -- transfer``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SOURCE = "bench_transfer_src"
LOAD = "bench_transfer_load"
DDL = (
    "CREATE TABLE {t} (id bigint PRIMARY KEY, updated_at timestamptz NOT NULL, "
    "customer text, amount double precision, qty integer, status text)"
)
FILL = (
    "INSERT INTO {t} SELECT g, timestamptz '2024-01-01 00:00:00+00' + g * interval '1 second', "
    "'customer-' || (g % 10007), (g % 100000) / 100.0, (g % 50)::int, "
    "(ARRAY['placed','paid','shipped','delivered','cancelled'])[1 + g % 5] "
    "FROM generate_series(1, {n}) g"
)
EXTRACTORS = ["raw-adbc", "flowport", "dlt-pyarrow", "dlt-connectorx", "pandas"]
LOADERS = ["raw-adbc-ingest", "flowport-load_file", "flowport-transfer"]
PANDAS_CHUNK = 100_000


# --------------------------------------------------------------------------- child side


def _status_mb(field: str) -> float:
    """A kB field of /proc/self/status (VmRSS, VmHWM) in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


def _peak_rss_mb() -> float:
    """Peak RSS of this process (VmHWM) or of its largest child, in MB."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return max(_status_mb("VmHWM"), children)


def _s3fs(spec: dict[str, Any]) -> Any:
    from pyarrow import fs

    url = urlsplit(spec["s3"]["endpoint"])
    return fs.S3FileSystem(
        access_key=spec["s3"]["key"],
        secret_key=spec["s3"]["secret"],
        region=spec["s3"]["region"],
        endpoint_override=url.netloc,
        scheme=url.scheme,
    )


@contextlib.contextmanager
def _output(spec: dict[str, Any], name: str) -> Iterator[Any]:
    """Where a raw writer writes: a local path, or an S3 output stream (closed after, which
    completes the upload)."""
    if spec["target"] == "local":
        path = Path(spec["local"]) / spec["prefix"] / name
        path.parent.mkdir(parents=True, exist_ok=True)
        yield str(path)
        return
    key = f"{spec['s3']['bucket']}/{spec['prefix']}/{name}"
    with _s3fs(spec).open_output_stream(key) as stream:
        yield stream


def _flowport_store(spec: dict[str, Any]) -> Any:
    if spec["target"] == "local":
        from flowport import LocalStore

        return LocalStore(spec["local"])
    from pydantic import SecretStr

    from flowport_s3 import AwsCredentials, S3Bucket, S3Store

    s3 = spec["s3"]
    creds = AwsCredentials(
        aws_access_key_id=SecretStr(s3["key"]),
        aws_secret_access_key=SecretStr(s3["secret"]),
        region_name=s3["region"],
        endpoint_url=s3["endpoint"],
        addressing_style="path",
    )
    return S3Store(S3Bucket(bucket_name=s3["bucket"], credentials=creds))


def extract_raw_adbc(spec: dict[str, Any]) -> Callable[[], None]:
    import adbc_driver_postgresql.dbapi as adbc
    import pyarrow.parquet as pq

    def work() -> None:
        with adbc.connect(spec["dsn"]) as conn, conn.cursor() as cur:
            cur.execute(f"SELECT * FROM {spec['table']}")
            reader = cur.fetch_record_batch()
            with (
                _output(spec, "part-0.parquet") as out,
                pq.ParquetWriter(out, reader.schema, compression="zstd") as writer,
            ):
                for batch in reader:
                    writer.write_batch(batch)

    return work


def _warm_flowport_sql() -> None:
    """Import what flowport imports lazily on first use (the ADBC driver, psycopg and its
    SQLAlchemy dialect, the installed plugins), as every other contender imports before
    timing."""
    import adbc_driver_manager  # noqa: F401
    import adbc_driver_postgresql  # noqa: F401
    import psycopg  # noqa: F401
    import pyarrow.compute
    import pyarrow.parquet  # noqa: F401
    import sqlalchemy.dialects.postgresql.psycopg  # noqa: F401

    from flowport.plugins import hook

    hook()


def extract_flowport(spec: dict[str, Any]) -> Callable[[], None]:
    from flowport.transfer import StoreSink
    from flowport.transfer_tasks import run_transfer
    from flowport_sql import SqlDatabase, SqlQuerySource

    _warm_flowport_sql()
    source = SqlQuerySource(SqlDatabase(url=spec["sqlalchemy_url"]), table=spec["table"])
    sink = StoreSink(_flowport_store(spec), spec["prefix"])

    def work() -> None:
        run_transfer.fn(source, sink, "orders", incremental=False)

    return work


def _extract_dlt(spec: dict[str, Any], backend: str) -> Callable[[], None]:
    os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")
    os.environ.setdefault("RUNTIME__LOG_LEVEL", "WARNING")
    import dlt
    from dlt.destinations import filesystem
    from dlt.sources.sql_database import sql_database

    if spec["target"] == "local":
        dest = filesystem(bucket_url=Path(spec["local"], spec["prefix"]).as_uri())
    else:
        s3 = spec["s3"]
        dest = filesystem(
            bucket_url=f"s3://{s3['bucket']}/{spec['prefix']}",
            credentials={
                "aws_access_key_id": s3["key"],
                "aws_secret_access_key": s3["secret"],
                "region_name": s3["region"],
                "endpoint_url": s3["endpoint"],
            },
        )
    kwargs: dict[str, Any] = {}
    if backend == "connectorx":
        kwargs["backend_kwargs"] = {"conn": spec["dsn"]}
    source = sql_database(
        credentials=spec["sqlalchemy_url"], table_names=[spec["table"]], backend=backend, **kwargs
    )
    pipeline = dlt.pipeline(
        pipeline_name=f"bench_{uuid.uuid4().hex[:8]}",
        pipelines_dir=tempfile.mkdtemp(prefix="dlt-bench-"),
        destination=dest,
        dataset_name="bench",
    )

    def work() -> None:
        info = pipeline.run(source, loader_file_format="parquet")
        info.raise_on_failed_jobs()

    return work


def extract_dlt_pyarrow(spec: dict[str, Any]) -> Callable[[], None]:
    return _extract_dlt(spec, "pyarrow")


def extract_dlt_connectorx(spec: dict[str, Any]) -> Callable[[], None]:
    return _extract_dlt(spec, "connectorx")


def extract_pandas(spec: dict[str, Any]) -> Callable[[], None]:
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq
    import sqlalchemy

    engine = sqlalchemy.create_engine(spec["sqlalchemy_url"])

    def work() -> None:
        writer = None
        query = f"SELECT * FROM {spec['table']}"
        with engine.connect() as conn, _output(spec, "part-0.parquet") as out:
            for frame in pd.read_sql(query, conn, chunksize=PANDAS_CHUNK):
                table = pa.Table.from_pandas(frame, preserve_index=False)
                if writer is None:
                    writer = pq.ParquetWriter(out, table.schema, compression="zstd")
                writer.write_table(table)
            assert writer is not None
            writer.close()

    return work


def load_raw_adbc_ingest(spec: dict[str, Any]) -> Callable[[], None]:
    import adbc_driver_postgresql.dbapi as adbc
    import pyarrow as pa
    import pyarrow.parquet as pq

    def work() -> None:
        reader = pq.ParquetFile(spec["file"]).iter_batches(batch_size=128 * 1024)
        schema = pq.read_schema(spec["file"])
        with adbc.connect(spec["dsn"]) as conn:
            with conn.cursor() as cur:
                cur.adbc_ingest(
                    spec["table"], pa.RecordBatchReader.from_batches(schema, reader), "append"
                )
            conn.commit()

    return work


def load_flowport_load_file(spec: dict[str, Any]) -> Callable[[], None]:
    from flowport import LocalStore
    from flowport_sql import SqlDatabase, load_file

    _warm_flowport_sql()
    db = SqlDatabase(url=spec["sqlalchemy_url"])
    path = Path(spec["file"])

    def work() -> None:
        load_file.fn(db, LocalStore(path.parent), path.name, spec["table"], format="parquet")

    return work


def load_flowport_transfer(spec: dict[str, Any]) -> Callable[[], None]:
    from flowport import LocalStore
    from flowport.transfer import StoreSource
    from flowport.transfer_tasks import run_transfer
    from flowport_sql import SqlDatabase, SqlTableSink

    _warm_flowport_sql()
    db = SqlDatabase(url=spec["sqlalchemy_url"])
    path = Path(spec["file"])
    source = StoreSource(LocalStore(path.parent), keys=[path.name])
    sink = SqlTableSink(db, spec["table"], create=False)

    def work() -> None:
        run_transfer.fn(source, sink, f"load-{uuid.uuid4().hex[:8]}", incremental=False)

    return work


CHILDREN: dict[str, Callable[[dict[str, Any]], Callable[[], None]]] = {
    "raw-adbc": extract_raw_adbc,
    "flowport": extract_flowport,
    "dlt-pyarrow": extract_dlt_pyarrow,
    "dlt-connectorx": extract_dlt_connectorx,
    "pandas": extract_pandas,
    "raw-adbc-ingest": load_raw_adbc_ingest,
    "flowport-load_file": load_flowport_load_file,
    "flowport-transfer": load_flowport_transfer,
}


def child(name: str) -> int:
    """Run one contender (spec as JSON on stdin); print its seconds and peak RSS as JSON."""
    spec = json.loads(sys.stdin.read())
    work = CHILDREN[name](spec)  # imports and setup: not timed
    base = _status_mb("VmRSS")
    started = time.perf_counter()
    work()
    seconds = time.perf_counter() - started
    print(json.dumps({"seconds": seconds, "rss_mb": _peak_rss_mb(), "base_mb": base}))
    return 0


# --------------------------------------------------------------------------- parent side


def run_child(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, __file__, "--child", name],
        input=json.dumps(spec),
        capture_output=True,
        text=True,
        timeout=3600,
        check=False,
    )
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-6:]
        return {"error": " | ".join(tail)[-400:]}
    return dict(json.loads(lines[-1]))


def parquet_rows(spec: dict[str, Any]) -> int:
    """Rows in every Parquet file under the contender's prefix (footers read back)."""
    import pyarrow.parquet as pq
    from pyarrow import fs

    if spec["target"] == "local":
        files = [str(p) for p in Path(spec["local"], spec["prefix"]).rglob("*.parquet")]
        filesystem = None
    else:
        filesystem = _s3fs(spec)
        selector = fs.FileSelector(f"{spec['s3']['bucket']}/{spec['prefix']}", recursive=True)
        files = [i.path for i in filesystem.get_file_info(selector) if i.path.endswith(".parquet")]
    files = [f for f in files if "/_dlt_" not in f and "_flowport_state" not in f]
    return sum(pq.ParquetFile(f, filesystem=filesystem).metadata.num_rows for f in files)


def best_of(attempts: list[dict[str, Any]]) -> dict[str, Any]:
    """The fastest successful attempt (or the last failure)."""
    ok = [a for a in attempts if "seconds" in a]
    return min(ok, key=lambda a: a["seconds"]) if ok else attempts[-1]


def psql(dsn: str, *statements: str) -> Any:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        result = None
        for statement in statements:
            cur = conn.execute(statement)
            result = cur.fetchone() if cur.description else None
        return result


def ensure_source(dsn: str, rows: int) -> None:
    """The source table with exactly ``rows`` rows (kept between runs of the same size)."""
    have = psql(dsn, f"SELECT to_regclass('{SOURCE}') IS NOT NULL")[0]
    if have and psql(dsn, f"SELECT count(*) FROM {SOURCE}")[0] == rows:
        return
    started = time.perf_counter()
    psql(
        dsn,
        f"DROP TABLE IF EXISTS {SOURCE}",
        DDL.format(t=SOURCE),
        FILL.format(t=SOURCE, n=rows),
        f"VACUUM ANALYZE {SOURCE}",
    )
    print(f"  filled {SOURCE} with {rows:,} rows in {time.perf_counter() - started:.1f}s")


def table(title: str, results: dict[str, dict[str, Any]], rows: int, dlt: bool, raw: str) -> None:
    ok = {n: r for n, r in results.items() if "seconds" in r}
    raw_s = ok.get(raw, {}).get("seconds")
    dlt_s = min((r["seconds"] for n, r in ok.items() if n.startswith("dlt-")), default=None)
    print(f"\n{title}")
    head = f"{'contender':<20} {'seconds':>8} {'rows/s':>11} {'vs raw':>7}"
    print(head + (f" {'vs dlt best':>11}" if dlt else "") + f" {'RSS MB: base -> peak':>21}")
    for name, r in results.items():
        if "seconds" not in r:
            print(f"{name:<20} FAILED: {r['error']}")
            continue
        line = f"{name:<20} {r['seconds']:>8.2f} {rows / r['seconds']:>11,.0f}"
        line += f" {raw_s / r['seconds']:>6.2f}x" if raw_s else f" {'-':>7}"
        if dlt:
            line += f" {dlt_s / r['seconds']:>10.2f}x" if dlt_s else f" {'-':>11}"
        rss = f"{r['base_mb']:.0f} -> {r['rss_mb']:.0f}"
        print(line + f" {rss:>21}" + ("" if r.get("checked") else "  (unchecked)"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=1, help="best of R runs per contender")
    parser.add_argument("--only", default="", help="comma-separated contenders")
    parser.add_argument("--targets", default="local,s3")
    parser.add_argument("--kafka-messages", type=int, default=1_000_000)
    parser.add_argument("--no-kafka", action="store_true")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.child)
    only = [n for n in args.only.split(",") if n]

    from flowport_testing import Harness

    harness = Harness()
    services = harness.up(["postgres", "s3"])
    pg, s3 = services["postgres"], services["s3"]
    bucket = f"bench-{uuid.uuid4().hex[:8]}"
    s3.client().create_bucket(Bucket=bucket)  # type: ignore[attr-defined]
    local = tempfile.mkdtemp(prefix="flowport-transfer-bench-")
    base = {
        "dsn": pg.dsn,  # type: ignore[attr-defined]
        "sqlalchemy_url": pg.sqlalchemy_url,  # type: ignore[attr-defined]
        "local": local,
        "s3": {
            "endpoint": s3.endpoint_url,  # type: ignore[attr-defined]
            "key": s3.access_key,  # type: ignore[attr-defined]
            "secret": s3.secret_key,  # type: ignore[attr-defined]
            "region": s3.region,  # type: ignore[attr-defined]
            "bucket": bucket,
        },
    }
    n = args.rows

    def extract_once(name: str, target: str) -> dict[str, Any]:
        spec = {**base, "table": SOURCE, "target": target, "prefix": uuid.uuid4().hex}
        got = run_child(name, spec)
        if "seconds" in got:
            rows = parquet_rows(spec)
            if rows != n:
                return {"error": f"wrote {rows:,} rows, not {n:,}"}
            got["checked"] = True
            got["prefix"] = spec["prefix"]
        return got

    def load_once(name: str, file: str) -> dict[str, Any]:
        psql(base["dsn"], f"DROP TABLE IF EXISTS {LOAD}", DDL.format(t=LOAD))
        got = run_child(name, {**base, "table": LOAD, "file": file})
        if "seconds" in got:
            count = psql(base["dsn"], f"SELECT count(*) FROM {LOAD}")[0]
            if count != n:
                return {"error": f"loaded {count:,} rows, not {n:,}"}
            got["checked"] = True
        return got

    try:
        ensure_source(base["dsn"], n)
        raw_file = None
        for target in args.targets.split(","):
            results: dict[str, dict[str, Any]] = {}
            for name in [e for e in EXTRACTORS if not only or e in only]:
                results[name] = best_of([extract_once(name, target) for _ in range(args.rounds)])
                print(f"  {target} {name}: {results[name]}", flush=True)
            if target == "local" and "prefix" in results.get("raw-adbc", {}):
                raw_file = str(next(Path(local, results["raw-adbc"]["prefix"]).rglob("*.parquet")))
            where = "a local directory" if target == "local" else "the S3 gateway"
            table(f"PostgreSQL -> Parquet on {where}, {n:,} rows", results, n, True, "raw-adbc")

        loaders = [x for x in LOADERS if not only or x in only]
        if raw_file and loaders:
            results = {}
            for name in loaders:
                results[name] = best_of([load_once(name, raw_file) for _ in range(args.rounds)])
                print(f"  load {name}: {results[name]}", flush=True)
            psql(base["dsn"], f"DROP TABLE IF EXISTS {LOAD}")
            table(f"Parquet -> PostgreSQL, {n:,} rows", results, n, False, "raw-adbc-ingest")
    finally:
        harness.down()
        subprocess.run(["rm", "-rf", local], check=False)

    if not args.no_kafka and not only:
        print("\nKafka -> Parquet on S3 (benchmarks/kafka.py --transfer):", flush=True)
        kafka = [sys.executable, str(ROOT / "benchmarks" / "kafka.py"), "--transfer"]
        kafka += ["--messages", str(args.kafka_messages), "--rounds", str(args.rounds)]
        return subprocess.run(kafka, check=False).returncode
    return 0


if __name__ == "__main__":
    sys.exit(main())
