"""Store-to-store copies and transfers between S3 (versitygw), GCS (fake-gcs-server) and a
LocalStore, in real Prefect flows. Every result is checked by an independent reader: a plain
boto3 client from the ``s3_server`` fixture, the google client from ``gcs_server``, pyarrow on
the raw bytes they fetch."""

from __future__ import annotations

import hashlib
import io
import json
import random
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from prefect import flow

from flowport.errors import FlowportError
from flowport.formats import write_batches
from flowport.retry import RetryPolicy
from flowport.store import LocalStore, ObjectStore
from flowport.transfer import STATE_DIR, Extract, StoreSink, StoreSource
from flowport.transfer_tasks import copy_between, run_transfer
from flowport_gcs import GcpCredentials, GcsBucket, GcsStore
from flowport_s3 import AwsCredentials, S3Bucket, S3Store
from flowport_s3 import errors as s3_errors

pytestmark = pytest.mark.usefixtures("prefect_server")

MiB = 1024 * 1024


# -- stores and independent readers ---------------------------------------------------------


@dataclass
class Remote:
    """A fresh bucket as a flowport store, plus a reader that does not go through flowport."""

    kind: str
    store: ObjectStore
    bucket: str
    raw_get: Callable[[str], bytes]
    raw_keys: Callable[[], list[str]]


def _s3_bucket_block(s3: Any, name: str) -> S3Bucket:
    creds = AwsCredentials(
        aws_access_key_id=s3.access_key,
        aws_secret_access_key=s3.secret_key,
        region_name=s3.region,
        endpoint_url=s3.endpoint_url,
        addressing_style="path",
    )
    # The smallest parts S3 allows: an 11 MiB object is already a 3-part upload.
    return S3Bucket(bucket_name=name, credentials=creds, part_size=5 * MiB)


def _s3(s3: Any) -> Remote:
    name = f"xfer-{uuid.uuid4().hex[:12]}"
    client = s3.client()
    client.create_bucket(Bucket=name)

    def keys() -> list[str]:
        out: list[str] = []
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=name):
            out += [o["Key"] for o in page.get("Contents", [])]
        return sorted(out)

    return Remote(
        "s3",
        S3Store(_s3_bucket_block(s3, name)),
        name,
        lambda key: client.get_object(Bucket=name, Key=key)["Body"].read(),
        keys,
    )


def _gcs(gcs: Any) -> Remote:
    name = f"xfer-{uuid.uuid4().hex[:12]}"
    client = gcs.client()
    client.create_bucket(name)
    block = GcsBucket(
        bucket=name,
        credentials=GcpCredentials(anonymous=True, endpoint=gcs.endpoint_url, project=gcs.project),
        chunk_size=256 * 1024,  # multi-chunk resumable uploads from 256 KiB up
        simple_upload_limit=256 * 1024,
    )
    return Remote(
        "gcs",
        GcsStore(block),
        name,
        lambda key: client.bucket(name).blob(key).download_as_bytes(),
        lambda: sorted(b.name for b in client.list_blobs(name)),
    )


@pytest.fixture
def s3(s3_server: Any) -> Remote:
    return _s3(s3_server)


@pytest.fixture
def gcs(gcs_server: Any) -> Remote:
    return _gcs(gcs_server)


@pytest.fixture(params=["s3", "gcs"])
def remote(request: pytest.FixtureRequest) -> Remote:
    if request.param == "s3":
        return _s3(request.getfixturevalue("s3_server"))
    return _gcs(request.getfixturevalue("gcs_server"))


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# -- a source of numbered rows -------------------------------------------------------------


@dataclass
class TableSource:
    """Rows ``id`` (the cursor) with a text and a float column, in batches of ``batch_rows``.
    ``on_batch(n)`` runs before batch ``n`` is handed out (a crash, a server kill)."""

    rows: list[int]
    batch_rows: int = 50
    on_batch: Callable[[int], None] | None = None
    uri: str = "memory://orders"

    def extract(self, since: Any = None) -> Extract:
        upper = max(self.rows, default=None)  # fixed when the extraction starts
        picked = [r for r in self.rows if since is None or r > since]

        def batches() -> Iterator[pa.RecordBatch]:
            for n, i in enumerate(range(0, len(picked), self.batch_rows)):
                if self.on_batch is not None:
                    self.on_batch(n)
                chunk = picked[i : i + self.batch_rows]
                yield pa.record_batch(
                    {
                        "id": pa.array(chunk, pa.int64()),
                        "name": [f"order-{x}" for x in chunk],
                        "total": [x / 8 for x in chunk],
                    }
                )

        return Extract(batches(), lower=since, upper=upper if picked else since)


def _expected(ids: list[int]) -> list[tuple[int, str, float]]:
    return [(x, f"order-{x}", x / 8) for x in ids]


def committed_rows(remote: Remote, prefix: str, name: str) -> list[tuple[int, str, float]]:
    """Rows of every file the state object names, read from raw bytes by pyarrow."""
    state = json.loads(remote.raw_get(f"{prefix}/{STATE_DIR}/{name}.json"))
    rows: list[tuple[int, str, float]] = []
    for key in state["files"]:
        table = pq.read_table(io.BytesIO(remote.raw_get(key)))
        rows += zip(*(table.column(c).to_pylist() for c in ("id", "name", "total")), strict=True)
    return rows


def data_keys(remote: Remote, prefix: str) -> list[str]:
    return [k for k in remote.raw_keys() if k.startswith(f"{prefix}/") and STATE_DIR not in k]


# -- (a) copies ----------------------------------------------------------------------------


def test_copy_between_s3_gcs_and_local_verified_by_independent_readers(
    s3: Remote, gcs: Remote, s3_server: Any, tmp_path: Path
) -> None:
    rng = random.Random(11)
    objects = {
        "c/empty.bin": b"",
        "c/small.txt": b"hello, stores\n",
        "c/one-chunk.bin": rng.randbytes(300_000),
        "c/nested/multipart.bin": rng.randbytes(11 * MiB + 7),  # 3 S3 parts, 45 GCS chunks
        "c/nested/exact.bin": rng.randbytes(10 * MiB),  # ends on a part and a chunk boundary
    }
    raw = s3_server.client()
    for key, data in objects.items():
        raw.put_object(Bucket=s3.bucket, Key=key, Body=data)
    local = LocalStore(tmp_path / "mirror")

    @flow
    def mirror() -> tuple[Any, Any]:
        to_gcs = copy_between(s3.store, gcs.store, prefix="c/", concurrency=3)
        to_local = copy_between(gcs.store, local, prefix="c/", concurrency=3)
        return to_gcs, to_local

    to_gcs, to_local = mirror()
    for result in (to_gcs, to_local):
        assert sorted(result.copied) == sorted(objects)
        assert result.bytes == sum(len(d) for d in objects.values())
        assert result.verified == "sha256"
    assert gcs.raw_keys() == sorted(objects)
    for key, data in objects.items():
        assert _sha(gcs.raw_get(key)) == _sha(data), key
        assert _sha((tmp_path / "mirror" / key).read_bytes()) == _sha(data), key


# -- (b) incremental transfers into S3 and GCS ----------------------------------------------


def test_run_transfer_incremental_into_a_store_sink(remote: Remote) -> None:
    source = TableSource(list(range(1, 301)))
    sink = StoreSink(remote.store, "orders", max_file_rows=120, row_group_rows=40)

    @flow
    def load() -> Any:
        return run_transfer(source, sink, "orders")

    first = load()
    assert (first.rows, first.lower, first.upper, len(first.written)) == (300, None, 300, 3)
    assert committed_rows(remote, "orders", "orders") == _expected(list(range(1, 301)))

    source.rows += list(range(301, 376))
    second = load()
    assert (second.rows, second.lower, second.upper, len(second.written)) == (75, 300, 375, 1)
    assert committed_rows(remote, "orders", "orders") == _expected(list(range(1, 376)))

    third = load()  # nothing new: no file, the mark stays
    assert (third.rows, third.written) == (0, ())
    assert committed_rows(remote, "orders", "orders") == _expected(list(range(1, 376)))
    assert len(data_keys(remote, "orders")) == 4
    for key in data_keys(remote, "orders"):  # row groups as configured, read from raw bytes
        meta = pq.ParquetFile(io.BytesIO(remote.raw_get(key))).metadata
        assert all(meta.row_group(i).num_rows <= 40 for i in range(meta.num_row_groups))


# -- (c) crash and rerun -------------------------------------------------------------------


def test_s3_gateway_killed_mid_transfer_then_rerun_loses_and_duplicates_nothing(
    s3_server: Any,
) -> None:
    remote = _s3(s3_server)
    block = _s3_bucket_block(s3_server, remote.bucket)
    impatient = RetryPolicy(attempts=2, initial_delay=0.05, max_delay=0.1, deadline=10.0)
    doomed_store = S3Store(block, retrier=impatient.bind(s3_errors.is_transient, "s3"))
    source = TableSource(list(range(1, 201)), batch_rows=25)

    @flow
    def load(store: ObjectStore, policy: RetryPolicy | None = None) -> Any:
        task = run_transfer if policy is None else run_transfer.with_options(retry_policy=policy)
        return task(source, StoreSink(store, "orders", max_file_rows=100), "orders")

    assert load(remote.store).rows == 200  # a first run sets the mark at 200

    source.rows += list(range(201, 501))  # 300 new rows: files of 100 rows
    killed: list[int] = []

    def kill_on_last_batch(n: int) -> None:
        # Batches 0-3, 4-7 and 8-11 make files 0, 1 and 2. The source reads ahead of the sink
        # (at most 2 batches queued), so when it makes batch 11 the sink has taken batch 8:
        # files 0 and 1 (rows 201-400) are written, and file 2 cannot be (it needs batch 11).
        if n == 11 and not killed:
            s3_server.kill()
            killed.append(n)

    source.on_batch = kill_on_last_batch
    try:
        with pytest.raises(FlowportError):
            load(doomed_store, RetryPolicy(attempts=1))
        assert killed == [11]
    finally:
        if not s3_server.is_running():
            s3_server.restart()
    source.on_batch = None

    # The crashed run left two whole files; the state object still says 200.
    state = json.loads(remote.raw_get(f"orders/{STATE_DIR}/orders.json"))
    assert state["upper"] == 200
    assert len(data_keys(remote, "orders")) == 2 + 2  # first run's 2 + the crashed run's 2
    assert committed_rows(remote, "orders", "orders") == _expected(list(range(1, 201)))

    rerun = load(remote.store)  # same mark, same names: overwrites what the crash left
    assert (rerun.rows, rerun.lower, rerun.upper) == (300, 200, 500)
    rows = committed_rows(remote, "orders", "orders")
    assert rows == _expected(list(range(1, 501)))  # row by row: 0 lost, 0 duplicated
    assert len({r[0] for r in rows}) == len(rows) == 500
    assert sorted(data_keys(remote, "orders")) == sorted(
        json.loads(remote.raw_get(f"orders/{STATE_DIR}/orders.json"))["files"]
    )  # no orphan of the crashed run
    # The upload cut by the kill could not be aborted (the gateway was down): at most that
    # one incomplete upload remains, invisible to readers, for a lifecycle rule to expire.
    uploads = s3_server.client().list_multipart_uploads(Bucket=remote.bucket).get("Uploads", [])
    assert len(uploads) <= 1, uploads


def test_source_dies_mid_transfer_into_gcs_then_rerun_loses_and_duplicates_nothing(
    gcs: Remote,
) -> None:
    source = TableSource(list(range(1, 151)), batch_rows=30)
    sink = StoreSink(gcs.store, "orders", max_file_rows=60, row_group_rows=30)

    @flow
    def load() -> Any:
        return run_transfer(source, sink, "orders")

    load()
    source.rows += list(range(151, 421))

    def die(n: int) -> None:
        if n == 5:  # 2 files of 60 rows written, the 3rd half-way through its upload
            raise ConnectionResetError("source connection lost")

    source.on_batch = die
    with pytest.raises(ConnectionResetError):
        load()
    assert committed_rows(gcs, "orders", "orders") == _expected(list(range(1, 151)))
    crashed = set(data_keys(gcs, "orders")) - set(sink.files("orders"))
    assert len(crashed) == 2  # two whole files; nothing of the third is visible

    source.on_batch = None
    rerun = load()
    assert (rerun.rows, rerun.lower, rerun.upper) == (270, 150, 420)
    rows = committed_rows(gcs, "orders", "orders")
    assert rows == _expected(list(range(1, 421)))
    assert sorted(data_keys(gcs, "orders")) == sorted(sink.files("orders"))


# -- (d) store source into a store sink across systems --------------------------------------


def test_store_source_on_s3_into_store_sink_on_gcs(s3: Remote, gcs: Remote) -> None:
    def batch(ids: range) -> pa.RecordBatch:
        return pa.record_batch(
            {
                "id": pa.array(list(ids), pa.int64()),
                "name": [f"order-{x}" for x in ids],
                "total": [x / 8 for x in ids],
            }
        )

    write_batches(s3.store, "in/day-01.parquet", [batch(range(1, 101))], row_group_rows=30)
    write_batches(s3.store, "in/day-02.parquet", [batch(range(101, 181))], row_group_rows=30)
    source = StoreSource(s3.store, "in/", batch_rows=25)
    sink = StoreSink(gcs.store, "mirror", max_file_rows=70)

    @flow
    def move() -> Any:
        return run_transfer(source, sink, "days")

    first = move()
    assert (first.rows, first.upper) == (180, "in/day-02.parquet")
    assert committed_rows(gcs, "mirror", "days") == _expected(list(range(1, 181)))

    write_batches(s3.store, "in/day-03.parquet", [batch(range(181, 231))])
    second = move()  # only the new file
    assert (second.rows, second.lower, second.upper) == (
        50,
        "in/day-02.parquet",
        "in/day-03.parquet",
    )
    assert committed_rows(gcs, "mirror", "days") == _expected(list(range(1, 231)))
