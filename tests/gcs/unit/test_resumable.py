"""The resumable chunk loop against a scripted session: a failed chunk resumes from what the
session committed, never from byte 0, and the object's bytes come out exact."""

from __future__ import annotations

import base64
import os
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import google_crc32c as _google_crc32c
import pytest

from flowport.errors import NotFound, PermanentError
from flowport.retry import RetryPolicy
from flowport_gcs import GcpCredentials, GcsBucket, GcsStore, errors
from tests.gcs.unit.fakes import GRANULE, FakeResponse, FakeSession

CHUNK = 4 * GRANULE  # 1 MiB
FAST = RetryPolicy(attempts=4, initial_delay=0, max_delay=0)
google_crc32c: Any = _google_crc32c  # untyped


class ScriptedStore(GcsStore):
    """GcsStore whose HTTP session is the fake (no network)."""

    def __init__(self, session: FakeSession, **block: Any):
        options = {"chunk_size": CHUNK, "simple_upload_limit": 0, **block}
        super().__init__(
            GcsBucket(bucket="b", credentials=GcpCredentials(anonymous=True), **options),
            retrier=FAST.bind(errors.is_transient, "test"),
        )
        self.session = session

    @property
    def _http(self) -> Any:
        return self.session

    def _start_session(self, *args: Any) -> str:
        return "http://fake/session"


def upload(store: ScriptedStore, data: bytes, sized: bool = True) -> None:
    if sized:
        store.put_bytes(data, "k")
    else:  # unknown size: an iterator of odd-sized pieces
        store.put_stream((data[i : i + 100_003] for i in range(0, len(data), 100_003)), "k")


@pytest.mark.parametrize("sized", [True, False])
def test_clean_upload_sends_each_byte_once(sized: bool) -> None:
    data = os.urandom(5 * CHUNK + 12345)
    store = ScriptedStore(FakeSession())
    upload(store, data, sized)
    stats = store.last_upload
    assert stats is not None
    assert bytes(store.session.data) == data
    assert stats.chunk_starts == [0, CHUNK, 2 * CHUNK, 3 * CHUNK, 4 * CHUNK, 5 * CHUNK]
    assert stats.bytes_sent == len(data)
    assert stats.resumed == 0


def test_reset_mid_chunk_resumes_from_committed_offset() -> None:
    data = os.urandom(5 * CHUNK + 77)
    # PUT #2 (the third chunk) commits one 256 KiB granule, then the connection drops.
    session = FakeSession({2: ("reset", GRANULE)})
    store = ScriptedStore(session)
    upload(store, data)
    stats = store.last_upload
    assert stats is not None
    assert bytes(session.data) == data
    assert session.queries >= 1  # it asked the session where it stood
    assert stats.resumed == 1
    assert stats.chunk_starts == [
        0,
        CHUNK,
        2 * CHUNK,
        2 * CHUNK + GRANULE,
        3 * CHUNK,
        4 * CHUNK,
        5 * CHUNK,
    ]
    assert stats.chunk_starts.count(0) == 1  # never restarted
    assert stats.bytes_sent == len(data) + (CHUNK - GRANULE)  # only the unacknowledged rest again


def test_lost_answer_is_not_sent_twice() -> None:
    data = os.urandom(3 * CHUNK + 5)
    session = FakeSession({1: ("lost", None)})  # committed, but the 308 never arrived
    store = ScriptedStore(session)
    upload(store, data)
    stats = store.last_upload
    assert stats is not None
    assert bytes(session.data) == data  # no duplicated chunk
    assert stats.chunk_starts == [0, CHUNK, 2 * CHUNK, 3 * CHUNK]
    assert stats.bytes_sent == len(data)


def test_checksum_mode_resends_a_chunk_the_session_did_not_keep() -> None:
    """fake-gcs-server mode: no status query; the crc32c it reports shows nothing was kept."""
    data = os.urandom(4 * CHUNK)
    session = FakeSession({2: ("reset", 0)})
    store = ScriptedStore(session, resume_check="checksum")
    upload(store, data)
    stats = store.last_upload
    assert stats is not None
    assert (session.queries, session.probes) == (0, 1)
    assert bytes(session.data) == data
    assert stats.chunk_starts == [0, CHUNK, 2 * CHUNK, 2 * CHUNK, 3 * CHUNK]


def test_checksum_mode_does_not_resend_a_chunk_the_session_kept() -> None:
    data = os.urandom(4 * CHUNK)
    session = FakeSession({1: ("lost", None)})
    store = ScriptedStore(session, resume_check="checksum")
    upload(store, data)
    stats = store.last_upload
    assert stats is not None
    assert session.probes == 1
    assert bytes(session.data) == data  # not duplicated
    assert stats.chunk_starts == [0, CHUNK, 2 * CHUNK, 3 * CHUNK]


def test_5xx_on_a_chunk_is_retried_alone() -> None:
    data = os.urandom(3 * CHUNK)
    session = FakeSession({1: ("status", 503)})
    store = ScriptedStore(session)
    upload(store, data)
    assert bytes(session.data) == data
    assert store.last_upload is not None
    assert store.last_upload.chunk_starts.count(0) == 1


def test_expired_session_is_permanent_and_tried_once() -> None:
    session = FakeSession({1: ("status", 404)})
    store = ScriptedStore(session)
    with pytest.raises(NotFound):
        upload(store, os.urandom(3 * CHUNK))
    assert session.puts == 2  # the 404 was not retried


def test_corrupt_result_is_detected() -> None:
    class Corrupting(FakeSession):
        def _object(self) -> dict[str, Any]:
            return {**super()._object(), "crc32c": "AAAAAA=="}

    store = ScriptedStore(Corrupting())
    with pytest.raises(PermanentError, match="corrupt"):
        upload(store, os.urandom(2 * CHUNK))


def test_status_query_answers_finished_object() -> None:
    """The last chunk's answer is lost after the server finished: the query returns it."""
    data = os.urandom(2 * CHUNK + 3)
    session = FakeSession({2: ("lost", None)})
    store = ScriptedStore(session)
    info = store.put_bytes(data, "k")
    assert info.size == len(data)
    assert bytes(session.data) == data


def test_fake_answers_like_gcs() -> None:  # guards the fake itself
    s = FakeSession()
    r = s.request(
        "PUT", "u", data=b"x" * GRANULE, headers={"Content-Range": f"bytes 0-{GRANULE - 1}/*"}
    )
    assert isinstance(r, FakeResponse)
    assert (r.status_code, r.headers["Range"]) == (308, f"bytes=0-{GRANULE - 1}")


def test_resumed_counts_chunks_not_retries() -> None:
    """One chunk failing twice is one resumed chunk (and two retries)."""
    data = os.urandom(3 * CHUNK + 9)
    session = FakeSession({1: ("status", 503), 2: ("status", 503)})  # both on the 2nd chunk
    store = ScriptedStore(session)
    upload(store, data)
    stats = store.last_upload
    assert stats is not None
    assert bytes(session.data) == data
    assert (stats.chunks, stats.resumed, stats.retries) == (4, 1, 2)


def test_chunks_resumed_in_two_places_count_two() -> None:
    data = os.urandom(4 * CHUNK)
    session = FakeSession({1: ("reset", 0), 4: ("lost", None)})
    store = ScriptedStore(session)
    upload(store, data)
    stats = store.last_upload
    assert stats is not None
    assert bytes(session.data) == data
    assert (stats.chunks, stats.resumed, stats.retries) == (4, 2, 2)


class TallySession:
    """A resumable session that keeps only a length and a running crc32c: it holds no payload,
    so traced memory is the uploader's own."""

    def __init__(self) -> None:
        self.size = 0
        self.crc: Any = google_crc32c.Checksum()

    def request(self, method: str, url: str, data: Any = b"", headers: Any = None, **_: Any) -> Any:
        first, _, total = headers["Content-Range"].removeprefix("bytes ").partition("/")
        if first != "*":
            self.crc.update(bytes(data) if isinstance(data, memoryview) else data)
            self.size += len(data)
        if total != "*" and int(total) == self.size:
            crc = base64.b64encode(self.crc.digest()).decode()
            return FakeResponse(200, body={"name": "k", "size": str(self.size), "crc32c": crc})
        return FakeResponse(308, {"Range": f"bytes=0-{self.size - 1}"} if self.size else {})


def _peak_upload_bytes(put: Callable[[ScriptedStore], Any]) -> int:
    """Peak bytes the upload allocated above what was live before it (tracemalloc)."""
    put(ScriptedStore(TallySession()))  # warm-up: lazy imports, caches
    store = ScriptedStore(TallySession())
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        put(store)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert store.last_upload is not None and store.last_upload.size > 4 * CHUNK
    return peak - base


#: Allocations besides chunk buffers (responses, checksums, frames) stay well under this.
SLACK = 128 * 1024


def test_resumable_file_upload_holds_at_most_two_chunks(tmp_path: Path) -> None:
    src = tmp_path / "f.bin"
    src.write_bytes(os.urandom(6 * CHUNK + 12345))
    peak = _peak_upload_bytes(lambda store: store.put_file(src, "k"))
    assert peak <= 2 * CHUNK + SLACK, f"{peak / CHUNK:.2f} chunks"


@pytest.mark.parametrize("piece", [100_003, CHUNK, 3 * CHUNK // 2])
def test_resumable_stream_upload_holds_at_most_two_chunks(piece: int) -> None:
    """Unsized, re-cut from odd pieces: two chunks plus the source's piece being cut."""
    total = 6 * CHUNK + 777

    def source() -> Iterator[bytes]:
        for start in range(0, total, piece):
            yield os.urandom(min(piece, total - start))

    peak = _peak_upload_bytes(lambda store: store.put_stream(source(), "k"))
    assert peak <= 2 * CHUNK + piece + SLACK, f"{peak / CHUNK:.2f} chunks"


def test_unsized_stream_ending_on_a_chunk_boundary_is_closed_by_an_empty_request() -> None:
    data = os.urandom(3 * CHUNK)
    store = ScriptedStore(FakeSession())
    store.put_stream(iter([data[:CHUNK], data[CHUNK:]]), "k")
    stats = store.last_upload
    assert stats is not None
    assert bytes(store.session.data) == data
    assert store.session.log[-1] == f"bytes */{3 * CHUNK}"
    assert stats.chunk_starts == [0, CHUNK, 2 * CHUNK, 3 * CHUNK]
    assert (stats.chunks, stats.bytes_sent) == (3, len(data))
