"""Correct calls of every prebuilt task: mypy and pyright must report nothing here.

Type-checked only, never run (``tests/typing/test_typing.py``). Each result is assigned to a
variable annotated with the task's real return type, so a return type that decays to ``Any``
or changes shows up as an error.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
from prefect import flow
from prefect.futures import PrefectFuture, PrefectFutureList
from typing_extensions import assert_type

from flowport import DeleteResult, LocalStore, ObjectInfo, RetryPolicy, SyncResult
from flowport_gcs import (
    GcpCredentials,
    GcsBucket,
    GcsStore,
    compose_objects,
    object_metadata,
)
from flowport_gcs import copy_object as gcs_copy_object
from flowport_gcs import delete_objects as gcs_delete_objects
from flowport_gcs import download_bytes as gcs_download_bytes
from flowport_gcs import download_file as gcs_download_file
from flowport_gcs import download_stream as gcs_download_stream
from flowport_gcs import exists as gcs_exists
from flowport_gcs import list_objects as gcs_list_objects
from flowport_gcs import move_object as gcs_move_object
from flowport_gcs import presigned_url as gcs_presigned_url
from flowport_gcs import stat as gcs_stat
from flowport_gcs import sync as gcs_sync
from flowport_gcs import upload_bytes as gcs_upload_bytes
from flowport_gcs import upload_file as gcs_upload_file
from flowport_gcs import upload_stream as gcs_upload_stream
from flowport_kafka import (
    Batch,
    ConsumeIntoResult,
    KafkaConnection,
    Message,
    PartitionLag,
    ProduceResult,
    Record,
    TopicInfo,
    await_message,
    commit,
    consume,
    consume_into,
    consumer_lag,
    create_topics,
    delete_topics,
    describe_topics,
    list_topics,
    produce,
    wait_for_lag_below,
)
from flowport_s3 import (
    AwsCredentials,
    S3Bucket,
    S3Store,
    check_bucket,
    copy_object,
    delete_objects,
    download_bytes,
    download_file,
    download_stream,
    exists,
    list_objects,
    move_object,
    presigned_url,
    stat,
    sync,
    upload_bytes,
    upload_file,
    upload_stream,
)
from flowport_sql import (
    Exported,
    SqlDatabase,
    bulk_insert,
    execute,
    execute_many,
    export_query,
    fetch_all,
    fetch_many,
    fetch_one,
    load_file,
    stream_query,
    transaction,
    upsert,
)


@flow
def sql_tasks() -> None:
    db = SqlDatabase(url="sqlite:///demo.db")
    other = SqlDatabase(database="local.db")
    store = LocalStore("/data")

    changed: int = execute(db, "UPDATE users SET active = :a WHERE id = :i", {"a": False, "i": 1})
    many: int = execute_many(
        db, "INSERT INTO tags (id, tag) VALUES (:id, :tag)", [{"id": 1, "tag": "x"}]
    )
    user: Any = fetch_one(db, "SELECT * FROM users WHERE id = :id", {"id": 7})
    first: list[Any] = fetch_many(db, "SELECT * FROM users ORDER BY id", size=100)
    everyone: list[Any] = fetch_all(other, "SELECT id, name FROM users", as_dicts=False)
    batches: Iterator[list[Any]] = stream_query(db, "SELECT * FROM events", batch_size=10_000)
    assert_type(stream_query(db, "SELECT 1", as_dicts=False), Iterator[list[Any]])
    arrow: Iterator[pa.RecordBatch] = stream_query(db, "SELECT * FROM events", format="arrow")
    assert_type(stream_query.fn(db, "SELECT 1", format="arrow"), Iterator[pa.RecordBatch])
    assert_type(stream_query.fn(db, "SELECT 1"), Iterator[list[Any]])
    inserted_arrow: int = bulk_insert(db, "events", pa.table({"id": [1], "kind": ["a"]}))
    parquet: Exported = export_query(db, "SELECT * FROM t", store, "t.parquet", format="parquet")
    loaded_parquet: int = load_file(db, store, "t.parquet", "t_copy", format="parquet")
    inserted: int = bulk_insert(db, "events", [{"id": 1, "kind": "a"}], batch_size=50_000)
    inserted_tuples: int = bulk_insert(db, "events", [(1, "a")], columns=["id", "kind"])
    upserted: int = upsert(db, "users", [{"id": 7, "name": "Ada"}], key_columns=["id"])
    upserted_some: int = upsert(db, "users", [{"id": 7}], ["id"], update_columns=["name"])
    counts: list[int] = transaction(
        db,
        [
            "DELETE FROM staging",
            ("UPDATE accounts SET balance = balance - :x WHERE id = :a", {"x": 10, "a": 1}),
            ("INSERT INTO audit (a, b) VALUES (:a, :b)", [{"a": 1, "b": 2}, {"a": 3, "b": 4}]),
        ],
    )
    exported: Exported = export_query(
        db, "SELECT * FROM events", store, "exports/events.csv", format="csv"
    )
    loaded: int = load_file(db, store, "exports/events.csv", "events_copy", format="csv")

    # .submit(), .map(), .fn and .with_options() keep run's parameters and return type.
    pending: PrefectFuture[int] = execute.submit(db, "DELETE FROM t")
    rows_later: PrefectFuture[list[Any]] = fetch_all.submit(db, "SELECT 1")
    direct: int = execute.fn(db, "DELETE FROM t", None)
    patient: int = execute.with_options(retry_policy=RetryPolicy(attempts=2))(db, "DELETE FROM t")
    renamed: list[int] = transaction.with_options(name="tx", tags=["nightly"])(db, ["SELECT 1"])
    print(changed, many, user, first, everyone, batches, inserted, inserted_tuples, upserted)
    print(upserted_some, counts, exported, loaded, pending, rows_later, direct, patient, renamed)
    print(arrow, inserted_arrow, parquet, loaded_parquet)


@flow
def s3_tasks(path: str) -> str | None:
    bucket = S3Bucket(
        bucket_name="raw-events",
        credentials=AwsCredentials(endpoint_url="http://127.0.0.1:7070", addressing_style="path"),
    )
    other = S3Bucket(bucket_name="archive")  # AWS, default credential chain

    info: ObjectInfo = upload_file(bucket, path, "2026/11/events.parquet")
    named: ObjectInfo = upload_file(bucket, Path(path), if_not_exists=True)
    blob: ObjectInfo = upload_bytes(bucket, b'{"ok": true}', "status.json")
    piped: ObjectInfo = upload_stream(bucket, io.BytesIO(b"x"), "in/piped.bin")
    lines: ObjectInfo = upload_stream(bucket, (r.encode() for r in ["a", "b"]), "out/rows.txt")
    local: Path = download_file(bucket, "in/big.bin", "/data/big.bin")
    into: Path = download_file(bucket, "in/big.bin", directory="/data")
    data: bytes = download_bytes(bucket, "status.json")
    with open("/data/out.bin", "wb") as fh:
        written: int = download_stream(bucket, "in/big.bin", fh, chunk_size=8 << 20)
    chunks: list[bytes] = []
    appended: int = download_stream(bucket, "in/big.bin", chunks.append)
    objs: list[ObjectInfo] = list_objects(bucket, "in/", glob="in/**.csv", limit=100)
    deleted: DeleteResult = delete_objects(bucket, [o.key for o in objs], raise_on_error=False)
    copied: ObjectInfo = copy_object(bucket, "in/big.bin", "big.bin", dest_bucket=other)
    moved: ObjectInfo = move_object(bucket, "in/big.bin", "done/big.bin")
    synced: SyncResult = sync(bucket, "/data/out", "reports", direction="download", compare="etag")
    url: str = presigned_url(bucket, "status.json", method="PUT", expires=600)
    there: bool = exists(bucket, "status.json")
    meta: ObjectInfo = stat(bucket, "status.json")
    ok: str = check_bucket(bucket)

    # .submit() -> PrefectFuture[R]; .map() -> PrefectFutureList[R]; .fn; .with_options()
    later: PrefectFuture[ObjectInfo] = upload_file.submit(bucket, path, "later.bin")
    later_bytes: PrefectFuture[bytes] = download_bytes.submit(bucket, "status.json")
    listings: PrefectFutureList[list[ObjectInfo]] = list_objects.map(bucket, ["a/", "b/"])
    checked: bool = exists.fn(bucket, "status.json")
    retried: ObjectInfo = upload_file.with_options(retry_policy=RetryPolicy(attempts=2))(
        bucket, path, "retried.bin"
    )
    print(named, blob, piped, lines, local, into, data, written, appended, deleted, copied)
    print(moved, synced, url, there, meta, ok, later, later_bytes, listings, checked, retried)
    return info.etag


@flow
def gcs_tasks(path: str) -> int:
    bucket = GcsBucket(
        bucket="raw-events",
        credentials=GcpCredentials(anonymous=True, endpoint="http://127.0.0.1:4443"),
    )
    other = GcsBucket(bucket="archive", credentials=GcpCredentials(project="my-project"))

    info: ObjectInfo = gcs_upload_file(bucket, path, "events/day.parquet", if_not_exists=True)
    typed: ObjectInfo = gcs_upload_file(bucket, path, content_type="application/json")
    blob: ObjectInfo = gcs_upload_bytes(bucket, b"{}", "status.json", if_generation_match=0)
    streamed: ObjectInfo = gcs_upload_stream(bucket, [b"a", b"b"], "rows.txt")
    local: Path = gcs_download_file(bucket, "events/day.parquet", "/tmp/day.parquet")
    data: bytes = gcs_download_bytes(bucket, "status.json")
    chunks: list[bytes] = []
    n: int = gcs_download_stream(bucket, "events/day.parquet", chunks.append)
    objs: list[ObjectInfo] = gcs_list_objects(bucket, "events/", recursive=False)
    deleted: DeleteResult = gcs_delete_objects(bucket, ["a", "b"])
    copied: ObjectInfo = gcs_copy_object(bucket, "a", "b", dest_bucket=other, if_generation_match=0)
    moved: ObjectInfo = gcs_move_object(bucket, "a", "c")
    synced: SyncResult = gcs_sync(bucket, "/data/out", "reports", compare="crc32c", dry_run=True)
    url: str = gcs_presigned_url(bucket, "status.json", expires=60)
    there: bool = gcs_exists(bucket, "status.json")
    meta: ObjectInfo = gcs_stat(bucket, "status.json")
    custom: dict[str, Any] = object_metadata(bucket, "status.json")
    composed: ObjectInfo = compose_objects(bucket, ["part-1", "part-2"], "whole")

    later: PrefectFuture[ObjectInfo] = gcs_upload_bytes.submit(bucket, b"x", "x.bin")
    store = GcsStore(bucket)
    print(info, typed, blob, streamed, data, n, objs, deleted, copied, moved, synced, url)
    print(there, meta, custom, composed, later, store)
    return local.stat().st_size


@flow
def kafka_tasks() -> int:
    kafka = KafkaConnection(bootstrap_servers="127.0.0.1:9092")

    created: list[str] = create_topics(kafka, "events", partitions=3)
    created_many: list[str] = create_topics(
        kafka, {"a": {"num_partitions": 1}, "b": {"configs": {"cleanup.policy": "compact"}}}
    )
    sent: ProduceResult = produce(
        kafka,
        "events",
        [Record({"id": 1}, key="customer-7", headers={"source": "web"}), {"id": 2}],
        key_serializer="str",
        value_serializer="json",
    )
    batch: Batch = consume(kafka, "events", group_id="loader", value_deserializer="json")
    committed: dict[tuple[str, int], int] = commit(kafka, batch)
    moved: ConsumeIntoResult = consume_into(
        kafka, ["events"], "loader", lambda b: len(b), batch_size=500, max_seconds=60.0
    )
    seen: Message = await_message(kafka, "deployments", lambda m: m.value == b"v2", timeout=300)
    topics: list[str] = list_topics(kafka, include_internal=True)
    infos: list[TopicInfo] = describe_topics(kafka, "events", all_configs=True)
    lag: list[PartitionLag] = consumer_lag(kafka, "loader", "events")
    settled: list[PartitionLag] = wait_for_lag_below(kafka, "loader", threshold=100, timeout=600)
    gone: list[str] = delete_topics(kafka, ["a", "b"])

    later: PrefectFuture[Batch] = consume.submit(kafka, "events", "loader")
    quick: list[str] = list_topics.with_options(retry_policy=RetryPolicy(attempts=1)).fn(kafka)
    print(created, created_many, sent, committed, moved, seen, topics, infos, lag, settled)
    print(gone, later, quick)
    return len(batch)


# The flow of the top-level README.md. Prefect 3.9 types ``Block.load`` (``@async_dispatch``)
# as ``Self | Coroutine[Any, Any, Self]``, so the two loads are narrowed first; the README's
# own text is checked as is by test_readme_flow (xfail until Prefect types ``load`` as Self).
@flow
def nightly_export() -> list[str]:
    creds = AwsCredentials.load("prod")
    assert isinstance(creds, AwsCredentials)
    bucket = S3Bucket(bucket_name="exports", credentials=creds)
    db = SqlDatabase.load("warehouse")
    assert isinstance(db, SqlDatabase)
    export_query(db, "SELECT * FROM orders", S3Store(bucket), "orders.csv")  # streamed
    return [o.key for o in list_objects(bucket, prefix="orders")]


@flow
def exact_types(path: str) -> None:
    """``assert_type`` is exact: it fails on ``Any`` where an annotated assignment would not."""
    db = SqlDatabase(url="sqlite://")
    bucket = S3Bucket(bucket_name="b")
    gcs = GcsBucket(bucket="b")
    kafka = KafkaConnection(bootstrap_servers="127.0.0.1:9092")
    assert_type(execute(db, "SELECT 1"), int)
    assert_type(export_query(db, "SELECT 1", S3Store(bucket), "k.csv"), Exported)
    assert_type(upload_file(bucket, path), ObjectInfo)
    assert_type(upload_file.submit(bucket, path), PrefectFuture[ObjectInfo])
    assert_type(upload_file.fn(bucket, path), ObjectInfo)
    assert_type(
        upload_file.with_options(retry_policy=RetryPolicy(attempts=2))(bucket, path), ObjectInfo
    )
    assert_type(list_objects.map(bucket, ["a/", "b/"]), PrefectFutureList[list[ObjectInfo]])
    assert_type(gcs_download_file(gcs, "k"), Path)
    assert_type(gcs_sync(gcs, "/data"), SyncResult)
    assert_type(consume(kafka, "t", "g"), Batch)
    assert_type(produce(kafka, "t", [b"x"]), ProduceResult)
