"""S3Store logic over an in-memory client: multipart, per-part retry, resume, batching."""

from __future__ import annotations

import hashlib
import io
import threading
from pathlib import Path

import pytest

from flowport.errors import AuthError, Conflict, InvalidInput, NotFound
from flowport.retry import RetryPolicy
from flowport_s3 import errors
from flowport_s3.store import bounded_map, local_etag, parts_of, rechunk
from tests.s3.unit.fakes import FakeS3, FakeStore, client_error

FAST = RetryPolicy(attempts=4, initial_delay=0, max_delay=0)
PART = 1024


def store(fake: FakeS3, **kw: object) -> FakeStore:
    return FakeStore(
        fake, retrier=FAST.bind(errors.is_transient, "unit"), part_size=PART, concurrency=3, **kw
    )


# -- helpers ----------------------------------------------------------------------------


def test_rechunk_makes_exact_parts() -> None:
    parts = list(rechunk([b"a" * 10, b"b" * 3, b"", b"c" * 20], 8))
    assert [len(p) for p in parts] == [8, 8, 8, 8, 1]
    assert b"".join(parts) == b"a" * 10 + b"b" * 3 + b"c" * 20


def test_parts_of_file_with_short_reads() -> None:
    class Trickle(io.RawIOBase):
        def __init__(self, data: bytes):
            self.data = io.BytesIO(data)

        def readable(self) -> bool:
            return True

        def read(self, n: int = -1) -> bytes:
            return self.data.read(min(n, 3) if n > 0 else n)

    data = bytes(range(256)) * 4
    parts = list(parts_of(Trickle(data), 100))
    assert all(len(p) == 100 for p in parts[:-1])
    assert b"".join(parts) == data


def test_bounded_map_limits_items_in_flight_and_keeps_order() -> None:
    alive = 0
    peak = 0
    lock = threading.Lock()

    def items():  # type: ignore[no-untyped-def]
        nonlocal alive, peak
        for i in range(40):
            with lock:
                alive += 1
                peak = max(peak, alive)
            yield i

    def work(i: int) -> int:
        nonlocal alive
        with lock:
            alive -= 1
        return i * 2

    assert bounded_map(items(), work, 4) == [i * 2 for i in range(40)]
    assert peak <= 4


def test_bounded_map_stops_after_a_failure() -> None:
    pulled = []

    def items():  # type: ignore[no-untyped-def]
        for i in range(1000):
            pulled.append(i)
            yield i

    def work(i: int) -> int:
        if i == 5:
            raise AuthError("no")
        return i

    with pytest.raises(AuthError):
        bounded_map(items(), work, 2)
    assert len(pulled) < 20


# -- uploads ----------------------------------------------------------------------------


def test_small_upload_is_one_put() -> None:
    fake = FakeS3()
    info = store(fake).put_bytes(b"x" * 100, "k")
    assert info.size == 100
    assert [op for op, _ in fake.calls] == ["PutObject"]


def test_multipart_upload_streams_parts_and_retries_a_part() -> None:
    fake = FakeS3()
    fake.faults["UploadPart"] = [client_error("SlowDown", 503), ConnectionResetError("reset")]
    data = bytes(range(256)) * 40 + b"tail"  # 10,244 bytes: 11 parts of 1 KiB
    chunks = (data[i : i + 333] for i in range(0, len(data), 333))
    info = store(fake).put_stream(chunks, "big")
    assert info.size == len(data)
    assert fake.objects["big"] == data
    assert len(fake.ops("UploadPart")) == 11 + 2  # two parts tried twice
    assert fake.max_in_flight <= 3
    complete = fake.ops("CompleteMultipartUpload")[0]
    assert [p["PartNumber"] for p in complete["MultipartUpload"]["Parts"]] == list(range(1, 12))
    assert fake.aborted == []


def test_multipart_permanent_failure_aborts() -> None:
    fake = FakeS3()
    fake.faults["UploadPart"] = [client_error("AccessDenied", 403)]
    with pytest.raises(AuthError):
        store(fake).put_bytes(b"y" * 5000, "denied")
    assert fake.aborted == ["up0"]
    assert "denied" not in fake.objects
    assert len(fake.ops("UploadPart")) <= 5  # no retry of the 403; in-flight parts finish


def test_source_failure_aborts_upload() -> None:
    fake = FakeS3()

    def source():  # type: ignore[no-untyped-def]
        yield b"z" * 3000
        raise OSError("disk gone")

    with pytest.raises(OSError, match="disk gone"):
        store(fake).put_stream(source(), "partial")
    assert fake.aborted == ["up0"]


def test_retry_exhaustion_raises_transient_error_and_aborts() -> None:
    fake = FakeS3()
    fake.faults["UploadPart"] = [client_error("InternalError", 500)] * 10
    with pytest.raises(Exception) as info:
        store(fake).put_bytes(b"q" * 3000, "k")
    assert info.value.transient  # type: ignore[attr-defined]
    assert fake.aborted == ["up0"]


def test_if_not_exists_single_and_multipart() -> None:
    fake = FakeS3()
    s = store(fake)
    s.put_bytes(b"a", "k", if_not_exists=True)
    with pytest.raises(Conflict):
        s.put_bytes(b"b", "k", if_not_exists=True)
    s.put_bytes(b"m" * 3000, "mk", if_not_exists=True)
    assert fake.ops("CompleteMultipartUpload")[0]["IfNoneMatch"] == "*"


def test_lost_complete_answer_is_recognised() -> None:
    """Complete succeeded but the answer was lost; the retry finds NoSuchUpload + the object."""
    fake = FakeS3()
    original = fake.complete_multipart_upload
    state = {"n": 0}

    def flaky_complete(**p):  # type: ignore[no-untyped-def]
        state["n"] += 1
        if state["n"] == 1:
            original(**p)
            raise ConnectionResetError("answer lost")
        raise client_error("NoSuchUpload", 404, "CompleteMultipartUpload")

    fake.complete_multipart_upload = flaky_complete  # type: ignore[method-assign]
    head = fake.head_object
    fake.head_object = lambda **p: {**head(**p), "ETag": '"abc-3"'}  # type: ignore[method-assign]
    info = store(fake).put_bytes(b"w" * 3000, "k")
    assert info.size == 3000
    assert fake.aborted == []


# -- downloads --------------------------------------------------------------------------


def test_stream_resumes_after_reset_with_range_and_if_match() -> None:
    fake = FakeS3()
    data = hashlib.sha256(b"seed").digest() * 200
    fake.objects["k"] = data
    fake.body_fail_after = 1000
    got = b"".join(store(fake).get_stream("k", chunk_size=256))
    assert got == data
    gets = fake.ops("GetObject")
    assert len(gets) == 2
    assert gets[1]["Range"] == "bytes=1000-"
    assert gets[1]["IfMatch"].strip('"') == hashlib.md5(data, usedforsecurity=False).hexdigest()


def test_get_file_parallel_ranges(tmp_path: Path) -> None:
    fake = FakeS3()
    data = bytes(range(256)) * 30
    fake.objects["k"] = data
    fake.faults["GetObject"] = [client_error("SlowDown", 503)]
    info = store(fake).get_file("k", tmp_path / "out.bin")
    assert (tmp_path / "out.bin").read_bytes() == data
    assert info.size == len(data)
    ranges = [p["Range"] for p in fake.ops("GetObject")]
    assert len(set(ranges)) == 8  # 7,680 bytes in 1 KiB ranges
    assert list(tmp_path.iterdir()) == [tmp_path / "out.bin"]


def test_get_file_failure_leaves_nothing(tmp_path: Path) -> None:
    fake = FakeS3()
    fake.objects["k"] = b"x" * 5000
    fake.faults["GetObject"] = [client_error("AccessDenied", 403)]
    with pytest.raises(AuthError):
        store(fake).get_file("k", tmp_path / "out.bin")
    assert list(tmp_path.iterdir()) == []


def test_missing_key_is_not_found() -> None:
    with pytest.raises(NotFound):
        store(FakeS3()).get_bytes("nope")


# -- delete, presign ------------------------------------------------------------------


def test_delete_many_batches_and_reports_per_key() -> None:
    fake = FakeS3()
    keys = [f"k/{i}" for i in range(25)] + ["locked/a", "../bad"]
    for key in keys[:-1]:
        fake.objects[key] = b"x"
    result = store(fake, delete_batch_size=10).delete_many(keys)
    assert len(fake.ops("DeleteObjects")) == 3
    assert all(len(p["Delete"]["Objects"]) <= 10 for p in fake.ops("DeleteObjects"))
    assert set(result.deleted) == set(keys[:25])
    assert set(result.errors) == {"locked/a", "../bad"}
    assert result.errors["locked/a"].startswith("AccessDenied")


def test_presign_validates_method_and_expiry() -> None:
    s = store(FakeS3())
    with pytest.raises(InvalidInput):
        s.presign("k", method="DELETE")
    with pytest.raises(InvalidInput):
        s.presign("k", expires=8 * 24 * 3600)


def test_local_etag_matches_s3_rules(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"a" * 2500)
    assert (
        local_etag(path, "abc", 1024) == hashlib.md5(b"a" * 2500, usedforsecurity=False).hexdigest()
    )
    parts = [b"a" * 1024, b"a" * 1024, b"a" * 452]
    digest = hashlib.md5(
        b"".join(hashlib.md5(p, usedforsecurity=False).digest() for p in parts),
        usedforsecurity=False,
    ).hexdigest()
    assert local_etag(path, "abc-3", 1024) == f"{digest}-3"


@pytest.mark.parametrize("evil", ["m/../../escape", "m/a/../../../escape"])
def test_sync_download_refuses_traversal_keys_before_writing(tmp_path: Path, evil: str) -> None:
    """S3 itself allows such keys; sync refuses the whole plan before any download."""
    fake = FakeS3()
    fake.objects["m/fine.txt"] = b"ok"
    fake.objects[evil] = b"evil"
    target = tmp_path / "inside"
    with pytest.raises(InvalidInput, match="escape"):
        store(fake).sync(target, "m", direction="download")
    assert fake.ops("GetObject") == []
    assert not (tmp_path / "escape").exists()
    assert list(tmp_path.rglob("*")) == []


def test_put_file_reads_parts_in_workers_and_retries_a_part(tmp_path: Path) -> None:
    fake = FakeS3()
    fake.faults["UploadPart"] = [client_error("RequestTimeout", 400)]
    path = tmp_path / "f.bin"
    data = bytes(range(256)) * 21  # 5,376 bytes: 6 parts
    path.write_bytes(data)
    info = store(fake).put_file(path, "f")
    assert info.size == len(data)
    assert fake.objects["f"] == data
    assert len(fake.ops("UploadPart")) == 7


def test_stream_uploads_buffer_at_most_stream_concurrency_parts() -> None:
    fake = FakeS3()
    gate = threading.Event()
    fake.on_part = lambda n: gate.wait(0.05)  # keep parts in flight a little while
    s = store(fake, stream_concurrency=2)
    s.put_stream((b"s" * 512 for _ in range(40)), "k")
    assert fake.max_in_flight <= 2
    assert len(fake.objects["k"]) == 40 * 512


def test_checksum_algorithm_declared_like_boto3_unless_only_when_required() -> None:
    fake = FakeS3()
    store(fake).put_bytes(b"c" * 3000, "k")
    assert fake.ops("CreateMultipartUpload")[0]["ChecksumAlgorithm"] == "CRC32"
    assert all(p["ChecksumAlgorithm"] == "CRC32" for p in fake.ops("UploadPart"))
    plain = FakeS3(checksums="when_required")
    store(plain).put_bytes(b"c" * 3000, "k")
    assert "ChecksumAlgorithm" not in plain.ops("CreateMultipartUpload")[0]
