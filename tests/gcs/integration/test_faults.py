"""Faults on the real emulator: its port cut by toxiproxy in the middle of transfers."""

from __future__ import annotations

import hashlib
import os
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import flowport_gcs as gcs
from flowport.errors import Conflict, InvalidInput
from flowport.hookspecs import hookimpl
from flowport.plugins import register, unregister
from flowport.retry import RetryPolicy
from flowport.store import sha256_of
from flowport_gcs import GcsBucket, GcsStore, errors
from tests.gcs.integration.conftest import make_block

pytestmark = pytest.mark.fault

MiB = 1024 * 1024
#: Enough patience to ride out a cut of a few seconds, quickly.
PATIENT = RetryPolicy(attempts=15, initial_delay=0.2, max_delay=1.0, deadline=180, jitter=False)


@pytest.fixture
def proxy(gcs_server: Any, toxiproxy: Any) -> Iterator[object]:
    p = toxiproxy.proxy_for(gcs_server, name=f"gcs-{uuid.uuid4().hex[:8]}")
    yield p
    p.delete()


def _bucket_lines(gcs_server: Any, bucket: str, since: int) -> list[str]:
    return [line for line in gcs_server.requests_log()[since:] if f"/b/{bucket}/" in line]


def _cut_when(
    event: threading.Event, proxy: Any, outage: float, delay: float = 0.05
) -> threading.Thread:
    def run() -> None:
        event.wait(timeout=300)
        time.sleep(delay)  # the next request is in flight by now
        proxy.disable()
        time.sleep(outage)
        proxy.enable()

    thread = threading.Thread(target=run, name="cut-the-port", daemon=True)
    thread.start()
    return thread


def test_resumable_upload_resumes_after_the_port_is_cut(
    gcs_server: Any,
    proxy: Any,
    bucket_name: str,
    tmp_path: Path,
) -> None:
    size = 200 * MiB
    chunk = 8 * MiB
    src = tmp_path / "200mb.bin"
    digest = hashlib.sha256()
    with src.open("wb") as fh:
        for _ in range(size // MiB):
            block_ = os.urandom(MiB)
            digest.update(block_)
            fh.write(block_)
    expected = digest.hexdigest()

    via_proxy = make_block(
        f"http://{proxy.listen}", bucket_name, gcs_server.project, chunk_size=chunk
    )
    store = GcsStore(via_proxy, retrier=PATIENT.bind(errors.is_transient, "fault-upload"))
    sent = {"n": 0}
    reached = threading.Event()

    def on_bytes(n: int) -> None:
        sent["n"] += n
        if sent["n"] >= 80 * MiB:
            reached.set()

    store.on_bytes = on_bytes
    # Long enough for several failed tries of the same chunk (backoff 0.2, 0.4, 0.8, 1.0 s).
    cutter = _cut_when(reached, proxy, outage=3.0)
    since = len(gcs_server.requests_log())
    info = store.put_file(src, "big/200mb.bin")
    cutter.join(timeout=60)
    assert reached.is_set()

    stats = store.last_upload
    assert stats is not None and info.size == size
    print(f"resumed={stats.resumed} retries={stats.retries} sent={stats.bytes_sent}")
    # One cut interrupts one chunk: it is one resumed chunk, however many tries it took.
    assert stats.resumed == 1, "the cut never reached a chunk" if not stats.resumed else stats
    assert stats.retries >= 2
    assert stats.chunks == size // chunk
    # Never restarted: one request at offset 0, offsets never go back past a committed chunk.
    assert stats.chunk_starts.count(0) == 1
    assert stats.chunk_starts == sorted(stats.chunk_starts)
    assert stats.bytes_sent <= size + 2 * chunk  # at most the interrupted chunk(s) again
    # The emulator saw one resumable session, never a second start.
    lines = _bucket_lines(gcs_server, bucket_name, since)
    starts = [line for line in lines if "POST /upload/storage/v1/b/" in line]
    assert len(starts) == 1, starts
    # The object is exactly the file (read directly, not through the proxy).
    direct = make_block(gcs_server.endpoint_url, bucket_name, gcs_server.project).store()
    assert sha256_of(direct.get_stream("big/200mb.bin")) == expected


def test_streamed_download_resumes_where_it_stopped(
    gcs_server: Any,
    proxy: Any,
    bucket_name: str,
    tmp_path: Path,
) -> None:
    data = os.urandom(48 * MiB)
    direct = make_block(gcs_server.endpoint_url, bucket_name, gcs_server.project).store()
    direct.put_bytes(data, "dl.bin")
    via_proxy = make_block(f"http://{proxy.listen}", bucket_name, gcs_server.project)
    store = GcsStore(via_proxy, retrier=PATIENT.bind(errors.is_transient, "fault-download"))
    got = {"n": 0}
    reached = threading.Event()

    def on_bytes(n: int) -> None:
        got["n"] += n
        if got["n"] >= 8 * MiB:
            reached.set()

    store.on_bytes = on_bytes
    since = len(gcs_server.requests_log())
    reader = store.open("dl.bin")
    out = bytearray()
    with reader:
        out += reader.read(8 * MiB)  # the first 8 MiB arrive
        proxy.disable()  # the open connection is cut mid-body
        proxy.enable()
        while chunk := reader.read(1 * MiB):
            out += chunk
    assert bytes(out) == data
    gets = [
        line for line in _bucket_lines(gcs_server, bucket_name, since) if "GET /download" in line
    ]
    assert len(gets) == 2  # the first GET, then one ranged GET from where it stopped
    assert got["n"] == len(data)  # no byte counted twice


def test_precondition_failure_is_conflict_after_one_attempt(
    gcs_server: Any,
    gcs_block: GcsBucket,
) -> None:
    retried: list[str] = []

    class Spy:
        @hookimpl
        def flowport_task_retried(self, name: str, **_: object) -> None:
            retried.append(name)

    spy = Spy()
    register(spy)
    try:
        gcs.upload_bytes.fn(gcs_block, b"first", "once.txt", if_not_exists=True)
        since = len(gcs_server.requests_log())
        with pytest.raises(Conflict, match="precondition"):
            gcs.upload_bytes.fn(
                gcs_block, b"second", "once.txt", if_not_exists=True, retry_policy=PATIENT
            )
    finally:
        unregister(spy)
    assert retried == []
    attempts = [
        line
        for line in _bucket_lines(gcs_server, gcs_block.bucket, since)
        if "ifGenerationMatch=0" in line
    ]
    assert len(attempts) == 1, attempts
    assert gcs.download_bytes.fn(gcs_block, "once.txt") == b"first"


@pytest.mark.parametrize("key", ["../escape.txt", "a/../../escape.txt", "/etc/passwd"])
def test_path_traversal_refused_before_any_request(
    gcs_server: Any,
    gcs_block: GcsBucket,
    tmp_path: Path,
    key: str,
) -> None:
    src = tmp_path / "f.txt"
    src.write_bytes(b"x")
    since = len(gcs_server.requests_log())
    with pytest.raises(InvalidInput):
        gcs.upload_file.fn(gcs_block, src, key)
    with pytest.raises(InvalidInput):
        gcs.download_file.fn(gcs_block, key, directory=tmp_path / "dl")
    with pytest.raises(InvalidInput):
        gcs.copy_object.fn(gcs_block, "whatever", key)
    assert _bucket_lines(gcs_server, gcs_block.bucket, since) == []
    assert not (tmp_path / "escape.txt").exists()
