"""Demo step for flowport-sql on SQLite (no service needed): bulk load, upsert, a transaction,
streaming, and an export to / load from a LocalStore."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

SERVICES: list[str] = []


def step(workdir: Path) -> str:
    """Runs inside the demo flow: every SQL task is a real task run."""
    import flowport_sql as sql
    from flowport import LocalStore

    db = sql.SqlDatabase(database=str(workdir / "sql-demo.db"))
    ddl = "CREATE TABLE {} (id INTEGER PRIMARY KEY, name TEXT, score REAL, ts TIMESTAMP)"
    sql.transaction(
        db,
        [
            "DROP TABLE IF EXISTS readings",
            "DROP TABLE IF EXISTS copy_of_readings",
            ddl.format("readings"),
            ddl.format("copy_of_readings"),
        ],
    )
    t0 = dt.datetime(2024, 1, 1)
    rows = (
        {"id": i, "name": f"sensor-{i % 10}", "score": i / 4, "ts": t0 + dt.timedelta(minutes=i)}
        for i in range(10_000)
    )
    loaded = sql.bulk_insert(db, "readings", rows, batch_size=2_500)
    sql.upsert(
        db,
        "readings",
        [
            {"id": 0, "name": "sensor-renamed", "score": -1.0},
            {"id": 10_000, "name": "sensor-new", "score": 1.0},
        ],
        ["id"],
    )
    batches = sum(1 for _ in sql.stream_query(db, "SELECT id FROM readings", batch_size=4_000))
    store = LocalStore(workdir / "sql-store")
    exported = sql.export_query(
        db, "SELECT id, name, score, ts FROM readings ORDER BY id", store, "exports/readings.csv"
    )
    reloaded = sql.load_file(db, store, "exports/readings.csv", "copy_of_readings")
    check = sql.fetch_one(db, "SELECT count(*) AS n, sum(score) AS total FROM copy_of_readings")
    db.dispose()
    return (
        f"sql: bulk-loaded {loaded} rows into SQLite, upserted 2, streamed {batches} batches, "
        f"exported {exported['rows']} rows ({exported['bytes']:,} bytes CSV) and loaded "
        f"{reloaded} back (count {check['n']}, sum {check['total']})"
    )
