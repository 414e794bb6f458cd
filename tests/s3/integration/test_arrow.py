"""Arrow formats over S3 on the real gateway: a failing writer leaves nothing half-written, and
Parquet reads fetch the footer and the needed column chunks with ranged GETs, not the file."""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from flowport.errors import InvalidInput
from flowport.formats import read_batches, write_batches
from flowport_s3 import S3Bucket, S3Store

MiB = 1024 * 1024


class _CountingBody:
    """A GetObject body that counts the bytes the client reads off the wire."""

    def __init__(self, body: Any, counts: dict[str, int]):
        self._body = body
        self._counts = counts

    def read(self, *args: Any, **kwargs: Any) -> bytes:
        data: bytes = self._body.read(*args, **kwargs)
        self._counts["body_bytes"] += len(data)
        return data

    def __getattr__(self, name: str) -> Any:
        return getattr(self._body, name)


class Requests:
    """Every S3 call of one client (botocore event hooks), and GetObject bytes read."""

    def __init__(self, client: Any):
        self.client = client
        self.calls: list[str] = []
        self.ranges: list[str | None] = []
        self.counts = {"body_bytes": 0}

    def _before(self, model: Any, params: Any, **_: Any) -> None:
        self.calls.append(model.name)
        if model.name == "GetObject":
            self.ranges.append(params.get("headers", {}).get("Range"))

    def _after(self, parsed: dict[str, Any], **_: Any) -> None:
        if "Body" in parsed:
            parsed["Body"] = _CountingBody(parsed["Body"], self.counts)

    def __enter__(self) -> Requests:
        self.client.meta.events.register("before-call.s3.*", self._before)
        self.client.meta.events.register("after-call.s3.GetObject", self._after)
        return self

    def __exit__(self, *exc: object) -> None:
        self.client.meta.events.unregister("before-call.s3.*", self._before)
        self.client.meta.events.unregister("after-call.s3.GetObject", self._after)


def _blob_batches(groups: int, rows: int, width: int, drift_at: int | None) -> Iterator[Any]:
    """``groups`` batches of incompressible rows; batch ``drift_at`` changes a column's type."""
    for g in range(groups):
        ids = list(range(g * rows, (g + 1) * rows))
        if g == drift_at:
            yield pa.record_batch({"id": [str(i) for i in ids], "blob": [b"x"] * rows})
            return
        yield pa.record_batch({"id": ids, "blob": [os.urandom(width) for _ in ids]})


@pytest.fixture
def small_parts(bucket: S3Bucket) -> S3Bucket:
    """The smallest parts S3 allows, so a few MiB already make a multipart upload."""
    return bucket.model_copy(update={"part_size": 5 * MiB, "stream_concurrency": 2})


def test_schema_drift_mid_multipart_aborts_and_keeps_the_previous_object(
    small_parts: S3Bucket, raw_client: Any
) -> None:
    store = S3Store(small_parts)
    name = small_parts.bucket_name
    raw_client.put_object(Bucket=name, Key="t/data.parquet", Body=b"previous version")
    # 4 row groups of ~4 MiB reach the gateway as parts before the 5th batch drifts.
    batches = _blob_batches(groups=6, rows=64, width=64 * 1024, drift_at=4)
    with Requests(store.client) as seen, pytest.raises(InvalidInput, match="'id' int64 -> string"):
        write_batches(store, "t/data.parquet", batches, row_group_rows=64)
    assert seen.calls.count("CreateMultipartUpload") == 1, seen.calls
    assert seen.calls.count("UploadPart") >= 2, seen.calls  # the upload was well under way
    assert seen.calls.count("AbortMultipartUpload") == 1, seen.calls
    assert "CompleteMultipartUpload" not in seen.calls
    assert raw_client.get_object(Bucket=name, Key="t/data.parquet")["Body"].read() == (
        b"previous version"
    )
    assert raw_client.list_multipart_uploads(Bucket=name).get("Uploads", []) == []
    keys = [o["Key"] for o in raw_client.list_objects_v2(Bucket=name).get("Contents", [])]
    assert keys == ["t/data.parquet"]


def test_failing_source_mid_multipart_leaves_no_object(
    small_parts: S3Bucket, raw_client: Any
) -> None:
    store = S3Store(small_parts)

    def source() -> Iterator[bytes]:
        for _ in range(12):
            yield os.urandom(MiB)
        raise ConnectionResetError("source died")

    with pytest.raises(ConnectionResetError):
        store.put_stream(source(), "t/stream.bin")
    name = small_parts.bucket_name
    assert raw_client.list_objects_v2(Bucket=name).get("KeyCount", 0) == 0
    assert raw_client.list_multipart_uploads(Bucket=name).get("Uploads", []) == []


def _wide_parquet(groups: int, rows: int) -> tuple[pa.Table, bytes]:
    rng = random.Random(7)
    table = pa.table(
        {
            "id": pa.array(range(groups * rows), pa.int64()),
            "a": [rng.randbytes(2048) for _ in range(groups * rows)],
            "b": [rng.randbytes(2048) for _ in range(groups * rows)],
        }
    )
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, row_group_size=rows, compression="none")
    return table, sink.getvalue().to_pybytes()


def test_parquet_column_read_fetches_footer_and_column_chunks_only(
    bucket: S3Bucket, raw_client: Any
) -> None:
    table, data = _wide_parquet(groups=8, rows=1024)  # ~32 MiB, 8 row groups
    raw_client.put_object(Bucket=bucket.bucket_name, Key="w/wide.parquet", Body=data)
    store = S3Store(bucket)
    with Requests(store.client) as seen:
        got = pa.Table.from_batches(list(read_batches(store, "w/wide.parquet", columns=["id"])))
    assert got.column("id").to_pylist() == table.column("id").to_pylist()
    # Measured figure for the report: bytes read off GetObject bodies vs the file size.
    print(
        f"\nS3 Parquet column read: {seen.counts['body_bytes']} of {len(data)} bytes, "
        f"{seen.calls.count('GetObject')} GETs, ranges {seen.ranges}"
    )
    assert seen.counts["body_bytes"] < len(data) // 20
    assert all(r and r.startswith("bytes=") and not r.endswith("-") for r in seen.ranges[1:])
    assert set(seen.calls) == {"GetObject"}


def test_seek_tell_and_read_match_the_bytes(bucket: S3Bucket, raw_client: Any) -> None:
    data = random.Random(3).randbytes(300_000)
    raw_client.put_object(Bucket=bucket.bucket_name, Key="s/obj", Body=data)
    store = S3Store(bucket)
    with store.open("s/obj") as reader:
        assert reader.seekable()
        assert reader.read(10) == data[:10]  # streamed before any seek
        assert reader.seek(-100, os.SEEK_END) == len(data) - 100
        assert reader.read(1000) == data[-100:]
        assert reader.read(5) == b""
        rng = random.Random(5)
        for _ in range(40):
            start = rng.randrange(len(data))
            size = rng.choice([1, 7, 4096, 70_000, 200_000])
            reader.seek(start)
            assert reader.read(size) == data[start : start + size]
            assert reader.tell() == min(start + size, len(data))
        reader.seek(5)
        assert reader.seek(10, os.SEEK_CUR) == 15
        assert reader.read() == data[15:]
