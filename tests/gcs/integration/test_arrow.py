"""Arrow formats over GCS on fake-gcs-server: a failing writer cancels its resumable session and
leaves nothing at the key; Parquet reads fetch the footer and the needed column chunks with
ranged GETs; download_file makes one metadata request."""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import flowport_gcs as gcs
from flowport.errors import InvalidInput
from flowport.formats import read_batches, write_batches
from flowport_gcs import GcsBucket, GcsStore

KiB = 1024


class Requests:
    """Every request the store's HTTP session sends (a ``requests`` response hook)."""

    def __init__(self, store: GcsStore):
        self.session = store._http
        self.seen: list[tuple[str, str, str | None, int]] = []

    def _hook(self, resp: Any, *args: Any, **kwargs: Any) -> Any:
        req = resp.request
        self.seen.append((req.method, req.url, req.headers.get("Range"), resp.status_code))
        return resp

    def __enter__(self) -> Requests:
        self.session.hooks["response"].append(self._hook)
        return self

    def __exit__(self, *exc: object) -> None:
        self.session.hooks["response"].remove(self._hook)

    def of(self, method: str, fragment: str = "") -> list[tuple[str, str, str | None, int]]:
        return [r for r in self.seen if r[0] == method and fragment in r[1]]


@pytest.fixture
def small_chunks(gcs_block: GcsBucket) -> GcsBucket:
    """256 KiB resumable chunks: a few hundred KiB already make a multi-chunk upload."""
    return gcs_block.model_copy(update={"chunk_size": 256 * KiB, "simple_upload_limit": 0})


def _blob_batches(groups: int, rows: int, width: int, drift_at: int) -> Iterator[Any]:
    for g in range(groups):
        ids = list(range(g * rows, (g + 1) * rows))
        if g == drift_at:
            yield pa.record_batch({"id": [str(i) for i in ids], "blob": [b"x"] * rows})
            return
        yield pa.record_batch({"id": ids, "blob": [os.urandom(width) for _ in ids]})


def test_schema_drift_mid_resumable_upload_cancels_and_keeps_the_previous_object(
    small_chunks: GcsBucket, gcs_server: Any
) -> None:
    store = GcsStore(small_chunks)
    bucket = gcs_server.client().bucket(small_chunks.bucket)
    bucket.blob("t/data.parquet").upload_from_string(b"previous version")
    # Row groups of ~200 KiB: 3 go out (several chunks sent) before the 4th batch drifts.
    batches = _blob_batches(groups=6, rows=50, width=4 * KiB, drift_at=3)
    with Requests(store) as seen, pytest.raises(InvalidInput, match="'id' int64 -> string"):
        write_batches(store, "t/data.parquet", batches, row_group_rows=50)
    assert len(seen.of("POST", "uploadType=resumable")) == 1, seen.seen  # session started
    assert len(seen.of("PUT", "upload_id=")) >= 2, seen.seen  # chunks were committed
    cancels = seen.of("DELETE", "upload_id=")
    assert [status for *_, status in cancels] == [499], seen.seen  # GCS: "client closed"
    assert store.last_upload is not None and store.last_upload.cancelled
    assert bucket.blob("t/data.parquet").download_as_bytes() == b"previous version"
    assert [b.name for b in gcs_server.client().list_blobs(small_chunks.bucket)] == [
        "t/data.parquet"
    ]


def test_failing_source_mid_resumable_upload_leaves_no_object(
    small_chunks: GcsBucket, gcs_server: Any
) -> None:
    store = GcsStore(small_chunks)

    def source() -> Iterator[bytes]:
        for _ in range(5):
            yield os.urandom(200 * KiB)
        raise ConnectionResetError("source died")

    with Requests(store) as seen, pytest.raises(ConnectionResetError):
        store.put_stream(source(), "t/stream.bin")
    assert len(seen.of("DELETE", "upload_id=")) == 1
    assert list(gcs_server.client().list_blobs(small_chunks.bucket)) == []


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
    gcs_block: GcsBucket, gcs_server: Any
) -> None:
    table, data = _wide_parquet(groups=8, rows=512)  # ~16 MiB, 8 row groups
    gcs_server.client().bucket(gcs_block.bucket).blob("w/wide.parquet").upload_from_string(data)
    store = GcsStore(gcs_block)
    fetched: list[int] = []
    store.on_bytes = fetched.append  # the store's own accounting of bytes received
    with Requests(store) as seen:
        got = pa.Table.from_batches(list(read_batches(store, "w/wide.parquet", columns=["id"])))
    assert got.column("id").to_pylist() == table.column("id").to_pylist()
    gets = seen.of("GET", "alt=media")
    ranged = [r for _, _, r, _ in gets[1:]]
    print(
        f"\nGCS Parquet column read: {sum(fetched)} of {len(data)} bytes, "
        f"{len(gets)} GETs, ranges {ranged}"
    )
    assert sum(fetched) < len(data) // 20
    assert all(r and not r.endswith("-") for r in ranged), ranged
    assert len(gets) == len(seen.seen)  # nothing but media GETs (no metadata request)


def test_seek_tell_and_read_match_the_bytes(gcs_block: GcsBucket, gcs_server: Any) -> None:
    data = random.Random(3).randbytes(300_000)
    gcs_server.client().bucket(gcs_block.bucket).blob("s/obj").upload_from_string(data)
    store = GcsStore(gcs_block)
    with store.open("s/obj") as reader:
        assert reader.seekable()
        assert reader.read(10) == data[:10]
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
    # A plain sequential read still checks the object's crc32c end to end.
    assert store.get_bytes("s/obj") == data


@pytest.mark.parametrize("size", [5, 3 * 1024 * KiB + 1], ids=["small", "multi-chunk"])
def test_download_file_makes_one_metadata_request(
    gcs_block: GcsBucket, gcs_server: Any, tmp_path: Path, size: int
) -> None:
    data = random.Random(size).randbytes(size)
    gcs_server.client().bucket(gcs_block.bucket).blob("d/obj").upload_from_string(data)
    store = GcsStore(gcs_block)  # the task's store shares this process's session
    with Requests(store) as seen:
        path = gcs.download_file.fn(gcs_block, "d/obj", tmp_path / "obj")
    assert Path(path).read_bytes() == data
    metadata = [r for r in seen.seen if "alt=media" not in r[1]]
    media = seen.of("GET", "alt=media")
    assert len(metadata) == 1, seen.seen
    assert metadata[0][0] == "GET" and "/o/d%2Fobj" in metadata[0][1]
    assert len(media) == 1, seen.seen
    assert len(seen.seen) == 2
