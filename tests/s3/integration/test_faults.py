"""Fault tests on the real server: a killed S3 server, connection resets, a wrong secret."""

from __future__ import annotations

import hashlib
import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from flowport.errors import AuthError, InvalidInput
from flowport.hookspecs import hookimpl
from flowport.plugins import register, unregister
from flowport.retry import RetryPolicy
from flowport_s3 import S3Bucket, S3Store, download_file, errors, stat, upload_bytes, upload_file
from tests.s3.integration.conftest import credentials_for

MiB = 1024 * 1024
#: Patient enough for a server restart or a fault window of a few seconds.
PATIENT = RetryPolicy(attempts=12, initial_delay=0.5, max_delay=4.0, deadline=300)


class Retries:
    """A behaviour plugin recording every retry flowport makes."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, int, str]] = []
        self.lock = threading.Lock()

    @hookimpl
    def flowport_task_retried(
        self, name: str, attempt: int, exception: BaseException, **_: Any
    ) -> None:
        with self.lock:
            self.seen.append((name, attempt, f"{type(exception).__name__}: {exception}"))


@pytest.fixture
def retries() -> Any:
    plugin = Retries()
    register(plugin)
    yield plugin
    unregister(plugin)


def big_file(path: Path, size: int) -> str:
    digest = hashlib.sha256()
    with path.open("wb") as fh:
        left = size
        while left:
            block = os.urandom(min(4 * MiB, left))
            fh.write(block)
            digest.update(block)
            left -= len(block)
    return digest.hexdigest()


def remote_sha256(raw_client: Any, bucket: str, key: str) -> str:
    digest = hashlib.sha256()
    for chunk in raw_client.get_object(Bucket=bucket, Key=key)["Body"].iter_chunks(MiB):
        digest.update(chunk)
    return digest.hexdigest()


def on_call(bucket: S3Bucket, operation: str, callback: Any) -> Any:
    """Run ``callback(n)`` after the n-th successful ``operation`` (botocore event hook)."""
    count = {"n": 0}
    lock = threading.Lock()

    def after(http_response: Any, **_: Any) -> None:
        if http_response is not None and http_response.status_code < 300:
            with lock:
                count["n"] += 1
                n = count["n"]
            callback(n)

    event = f"after-call.s3.{operation}"
    bucket.client().meta.events.register(event, after)
    return lambda: bucket.client().meta.events.unregister(event, after)


def test_server_killed_mid_multipart_upload_of_300mb(
    bucket: S3Bucket, s3_server: Any, raw_client: Any, tmp_path: Path, retries: Retries
) -> None:
    src = tmp_path / "300mb.bin"
    expected = big_file(src, 300 * MiB)
    killed = threading.Event()
    restarted = threading.Event()

    def chaos() -> None:
        killed.wait(120)
        s3_server.kill()  # SIGKILL: parts in flight die with their connections
        time.sleep(1.0)
        s3_server.restart()
        restarted.set()

    def trigger(n: int) -> None:
        if n == 8:  # a quarter of the way through
            killed.set()

    chaos_thread = threading.Thread(target=chaos, daemon=True)
    chaos_thread.start()
    stop = on_call(bucket, "UploadPart", trigger)
    try:
        info = upload_file.fn(bucket, src, "big/300mb.bin", retry_policy=PATIENT)
    finally:
        stop()
        killed.set()
        chaos_thread.join(60)
    assert restarted.is_set(), "the server was never killed and restarted"
    assert info.size == 300 * MiB
    assert retries.seen, "the kill caused no retry: it did not hit the upload"
    assert remote_sha256(raw_client, bucket.bucket_name, "big/300mb.bin") == expected
    assert raw_client.list_multipart_uploads(Bucket=bucket.bucket_name).get("Uploads", []) == []


def test_connection_resets_are_retried(
    bucket: S3Bucket, s3_server: Any, toxiproxy: Any, tmp_path: Path, retries: Retries
) -> None:
    proxy = toxiproxy.proxy_for(s3_server, name="s3-resets")
    try:
        via_proxy = bucket.model_copy(
            update={"credentials": credentials_for(s3_server, endpoint=f"http://{proxy.listen}")}
        )
        data = os.urandom(20 * MiB + 5)

        def window() -> threading.Thread:
            """Reset every connection until flowport has retried once more, then heal.

            Healing on the retry, not on a clock, keeps the test honest on a loaded machine
            where the client may not even connect within a fixed window."""
            before = len(retries.seen)
            toxic = proxy.reset_peer(0)

            def heal() -> None:
                deadline = time.monotonic() + 120
                while len(retries.seen) == before and time.monotonic() < deadline:
                    time.sleep(0.05)
                toxic.remove()

            thread = threading.Thread(target=heal)
            thread.start()
            return thread

        healer = window()
        info = upload_bytes.fn(via_proxy, data, "resets/blob", retry_policy=PATIENT)
        healer.join()
        assert info.size == len(data)
        uploads_retried = len(retries.seen)
        assert uploads_retried >= 1
        assert any(
            "reset" in cause.lower() or "connection" in cause.lower()
            for _, _, cause in retries.seen
        )

        healer = window()
        path = download_file.fn(via_proxy, "resets/blob", tmp_path / "blob", retry_policy=PATIENT)
        healer.join()
        assert Path(path).read_bytes() == data
        assert len(retries.seen) > uploads_retried
    finally:
        proxy.delete()


def test_broken_download_stream_resumes_from_its_offset(
    bucket: S3Bucket, s3_server: Any, toxiproxy: Any, retries: Retries
) -> None:
    """Every connection is closed after 10 MiB (toxiproxy limit_data): the 40 MiB stream
    completes only by resuming with Range requests from where it stopped."""
    data = os.urandom(40 * MiB)
    S3Store(bucket).put_bytes(data, "resume/blob")
    proxy = toxiproxy.proxy_for(s3_server, name="s3-resume")
    try:
        via_proxy = bucket.model_copy(
            update={"credentials": credentials_for(s3_server, endpoint=f"http://{proxy.listen}")}
        )
        ranges: list[str] = []
        via_proxy.client().meta.events.register(
            "provide-client-params.s3.GetObject",
            lambda params, **_: ranges.append(params.get("Range", "")),
        )
        proxy.toxic("limit_data", "downstream", bytes=10 * MiB)
        store = S3Store(via_proxy, retrier=PATIENT.bind(errors.is_transient, "resume-test"))
        digest = hashlib.sha256()
        for chunk in store.get_stream("resume/blob", chunk_size=MiB):
            digest.update(chunk)
        assert digest.hexdigest() == hashlib.sha256(data).hexdigest()
        resumed = [r for r in ranges if r]
        assert resumed, "no resumed request: the toxics did not break the stream"
        offsets = [int(r.removeprefix("bytes=").rstrip("-")) for r in resumed]
        assert offsets == sorted(offsets) and offsets[0] > 0
    finally:
        proxy.delete()


def test_wrong_secret_is_auth_error_after_exactly_one_attempt(
    bucket: S3Bucket, s3_server: Any, retries: Retries
) -> None:
    wrong = bucket.model_copy(
        update={"credentials": credentials_for(s3_server, secret="definitely-not-the-secret")}
    )
    sent: list[str] = []
    wrong.client().meta.events.register(
        "before-send.s3", lambda request, **_: sent.append(request.method)
    )
    with pytest.raises(AuthError) as info:
        upload_bytes.fn(wrong, b"data", "auth/k")
    assert len(sent) == 1
    assert retries.seen == []
    assert "definitely-not-the-secret" not in str(info.value)
    assert "credentials" in str(info.value)
    sent.clear()
    with pytest.raises(AuthError):
        stat.fn(wrong, "auth/k")
    assert len(sent) == 1


def test_path_traversal_refused_before_any_request(bucket: S3Bucket, tmp_path: Path) -> None:
    target = tmp_path / "inside"
    target.mkdir()
    sent: list[str] = []
    bucket.client().meta.events.register(
        "before-send.s3", lambda request, **_: sent.append(request.url)
    )
    for key in ("../outside", "a/../../outside", "/etc/passwd", "nul\x00byte", "a\\..\\..\\x"):
        with pytest.raises(InvalidInput):
            download_file.fn(bucket, key, directory=target)
    assert sent == []
    assert list(tmp_path.rglob("*")) == [target]
