"""Incorrect calls: mypy and pyright must flag exactly the lines marked ``# expect-error``.

Type-checked only, never run (``tests/typing/test_typing.py``).
"""

from __future__ import annotations

from prefect import flow
from prefect.futures import PrefectFuture

from flowport import ObjectInfo, RetryPolicy
from flowport_gcs import GcsBucket
from flowport_kafka import KafkaConnection, consume, list_topics
from flowport_s3 import S3Bucket, download_bytes, exists, upload_bytes, upload_file
from flowport_sql import SqlDatabase, execute, fetch_all, stream_query


@flow
def wrong() -> None:
    db = SqlDatabase(url="sqlite://")
    bucket = S3Bucket(bucket_name="b")
    gcs = GcsBucket(bucket="b")
    kafka = KafkaConnection(bootstrap_servers="127.0.0.1:9092")

    upload_file(bucket, 42, "k")  # expect-error: path is str | PathLike
    execute(db)  # expect-error: statement is required
    consume(kafka, "events", "loader", max_mesages=10)  # expect-error: unknown keyword
    topics: int = list_topics(kafka)  # expect-error: returns list[str]
    upload_bytes(gcs, b"x", "k")  # expect-error: an S3 task wants an S3Bucket
    later: PrefectFuture[str] = download_bytes.submit(bucket, "k")  # expect-error: bytes
    exists.fn(bucket, 1)  # expect-error: key is str
    renamed: ObjectInfo = upload_file.with_options(name="up")(bucket, "p", 3)  # expect-error
    rows: list[int] = fetch_all(db, "SELECT 1", as_dicts="yes")  # expect-error: bool
    stream_query(db, "SELECT 1", format="parquet")  # expect-error: "rows" or "arrow"
    # Per-call retry_policy= works at run time but is not part of run's signature;
    # the typed spelling is task.with_options(retry_policy=...).
    execute(db, "SELECT 1", retry_policy=RetryPolicy(attempts=2))  # expect-error
    S3Bucket(prefix="landing")  # expect-error: bucket_name is required
    print(topics, later, renamed, rows)
