"""Every prebuilt task inside real Prefect flows, against the real S3 server."""

from __future__ import annotations

import hashlib
import io
import logging
import re
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from prefect import flow

from flowport.cli import main as flowport_cli
from flowport.errors import Conflict, DeliveryError, InvalidInput, NotFound
from flowport.store import sha256_of
from flowport_s3 import (
    S3Bucket,
    S3Store,
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
    upload_bytes,
    upload_file,
    upload_stream,
)

pytestmark = pytest.mark.usefixtures("prefect_server")

MiB = 1024 * 1024


def pattern(size: int, seed: int = 0) -> bytes:
    block = hashlib.sha256(str(seed).encode()).digest() * 2048  # 64 KiB
    return (block * (size // len(block) + 1))[:size]


def test_upload_download_round_trip_in_a_flow(
    bucket: S3Bucket, tmp_path: Path, raw_client: Any
) -> None:
    src = tmp_path / "in.bin"
    src.write_bytes(pattern(20 * MiB + 3))  # 3 parts of 8 MiB

    @flow
    def roundtrip() -> tuple[Any, ...]:
        up = upload_file(bucket, src, "data/in.bin")
        small = upload_bytes(bucket, b"hello", "data/hello.txt")
        streamed = upload_stream(bucket, (pattern(MiB, i) for i in range(9)), "data/stream.bin")
        path = download_file(bucket, "data/in.bin", tmp_path / "out" / "in.bin")
        into = download_file(bucket, "data/hello.txt", directory=tmp_path / "dir")
        data = download_bytes(bucket, "data/hello.txt")
        sink = io.BytesIO()
        n = download_stream(bucket, "data/stream.bin", sink, chunk_size=MiB)
        return up, small, streamed, path, into, data, n, sink.getvalue()

    up, small, streamed, path, into, data, n, streamed_back = roundtrip()
    assert up.size == src.stat().st_size and up.etag.endswith("-3")  # multipart
    assert small.size == 5
    assert streamed.size == 9 * MiB
    assert Path(path).read_bytes() == src.read_bytes()
    assert Path(into) == (tmp_path / "dir" / "data" / "hello.txt").resolve()
    assert Path(into).read_bytes() == b"hello"
    assert data == b"hello"
    assert n == 9 * MiB and streamed_back == b"".join(pattern(MiB, i) for i in range(9))
    # what the server holds, read behind flowport's back
    body = raw_client.get_object(Bucket=bucket.bucket_name, Key="data/in.bin")["Body"].read()
    assert hashlib.sha256(body).hexdigest() == hashlib.sha256(src.read_bytes()).hexdigest()


def test_table_artifact_summarises_transfer(bucket: S3Bucket) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    @flow
    def one() -> None:
        upload_bytes(bucket, b"12345", "art/k")

    one()

    async def read() -> list[Any]:
        async with get_client() as client:
            return await client.read_artifacts(
                artifact_filter=ArtifactFilter(
                    key=ArtifactFilterKey(
                        any_=[f"flowport-one-upload-bytes-s3-{bucket.bucket_name}"]
                    )
                )
            )

    import anyio

    artifacts = anyio.run(read)
    tables = [str(a.data) for a in artifacts if "art/k" in str(a.data)]
    assert len(tables) == 1
    table = tables[0]
    assert "bytes" in table and "seconds" in table
    assert bucket.credentials.aws_secret_access_key.get_secret_value() not in table


def test_list_stat_exists(bucket: S3Bucket) -> None:
    store = S3Store(bucket)
    for key in ["l/a.csv", "l/b.txt", "l/sub/c.csv", "l/sub/deep/d.csv"]:
        store.put_bytes(b"12", key)

    @flow
    def look() -> tuple[Any, ...]:
        return (
            list_objects(bucket, "l/", glob="l/**.csv"),
            list_objects(bucket, "l/", recursive=False),
            list_objects(bucket, "l/", limit=2),
            stat(bucket, "l/a.csv"),
            exists(bucket, "l/a.csv"),
            exists(bucket, "l/zzz"),
        )

    deep, shallow, limited, info, yes, no = look()
    assert [i.key for i in deep] == ["l/a.csv", "l/sub/c.csv", "l/sub/deep/d.csv"]
    assert [(i.key, i.is_prefix) for i in shallow] == [
        ("l/a.csv", False),
        ("l/b.txt", False),
        ("l/sub/", True),
    ]
    assert len(limited) == 2
    assert info.size == 2 and info.etag and info.last_modified is not None
    assert yes is True and no is False
    with pytest.raises(NotFound, match="l/zzz"):
        stat.fn(bucket, "l/zzz")


def test_copy_move_and_cross_bucket(bucket: S3Bucket, s3_server: Any, raw_client: Any) -> None:
    other_name = f"t-{uuid.uuid4().hex[:20]}"
    raw_client.create_bucket(Bucket=other_name)
    other = bucket.model_copy(update={"bucket_name": other_name})
    upload_bytes.fn(bucket, b"payload", "c/src")

    @flow
    def shuffle() -> tuple[Any, ...]:
        a = copy_object(bucket, "c/src", "c/copy")
        b = move_object(bucket, "c/copy", "c/moved")
        c = copy_object(bucket, "c/src", "elsewhere/src", dest_bucket=other)
        return a, b, c

    a, b, c = shuffle()
    assert a.size == b.size == c.size == 7
    assert download_bytes.fn(bucket, "c/moved") == b"payload"
    assert not exists.fn(bucket, "c/copy")
    assert download_bytes.fn(other, "elsewhere/src") == b"payload"
    with pytest.raises(NotFound):
        copy_object.fn(bucket, "c/absent", "c/x")
    raw_client.delete_object(Bucket=other_name, Key="elsewhere/src")
    raw_client.delete_bucket(Bucket=other_name)


@pytest.mark.parametrize("algorithm", [None, "SHA256"])
def test_multipart_copy_above_threshold(
    bucket: S3Bucket, raw_client: Any, algorithm: str | None
) -> None:
    """The >5 GiB path, exercised at 20 MiB by lowering the threshold (same code path)."""
    bucket = bucket.model_copy(update={"checksum_algorithm": algorithm})
    data = pattern(20 * MiB + 11, 3)
    store = S3Store(bucket)
    store.put_bytes(data, "mc/src")
    calls: list[str] = []
    client = bucket.client()
    client.meta.events.register("before-call.s3.*", lambda model, **_: calls.append(model.name))
    try:
        info = S3Store(bucket, multipart_copy_threshold=5 * MiB).copy("mc/src", "mc/dst")
    finally:
        client.meta.events.unregister("before-call.s3.*")
    assert calls.count("UploadPartCopy") == 3
    assert "CopyObject" not in calls
    assert info.size == len(data)
    body = raw_client.get_object(Bucket=bucket.bucket_name, Key="mc/dst")["Body"].read()
    assert body == data


def test_delete_objects_batches_of_1000(bucket: S3Bucket) -> None:
    client = bucket.client()
    keys = [f"del/{i:05d}" for i in range(1005)]
    with ThreadPoolExecutor(16) as pool:
        list(
            pool.map(lambda k: client.put_object(Bucket=bucket.bucket_name, Key=k, Body=b"x"), keys)
        )
    sizes: list[int] = []

    def count(params: dict[str, Any], **_: Any) -> None:
        sizes.append(len(params["Delete"]["Objects"]))

    client.meta.events.register("provide-client-params.s3.DeleteObjects", count)
    try:
        result = delete_objects.fn(bucket, [*keys, "del/never-existed"])
    finally:
        client.meta.events.unregister("provide-client-params.s3.DeleteObjects", count)
    assert sorted(sizes) == [6, 1000]
    assert result.errors == {}
    assert len(result.deleted) == 1006
    assert list_objects.fn(bucket, "del/") == []


def test_delete_objects_reports_invalid_keys(bucket: S3Bucket) -> None:
    upload_bytes.fn(bucket, b"x", "ok")
    with pytest.raises(DeliveryError, match=r"1 of 2 key\(s\).*\.\./bad"):
        delete_objects.fn(bucket, ["ok", "../bad"])
    result = delete_objects.fn(bucket, ["../bad"], raise_on_error=False)
    assert set(result.errors) == {"../bad"}
    assert not exists.fn(bucket, "ok")


def test_presigned_get_and_put(bucket: S3Bucket) -> None:
    put_url = presigned_url.fn(bucket, "p/up.txt", method="PUT", expires=120)
    req = urllib.request.Request(put_url, data=b"via presigned PUT", method="PUT")
    with urllib.request.urlopen(req, timeout=30) as resp:
        assert resp.status == 200
    get_url = presigned_url.fn(bucket, "p/up.txt", expires=120)
    with urllib.request.urlopen(get_url, timeout=30) as resp:
        assert resp.read() == b"via presigned PUT"
    assert "X-Amz-Expires=120" in get_url


def test_conditional_create(bucket: S3Bucket, tmp_path: Path) -> None:
    src = tmp_path / "big"
    src.write_bytes(pattern(9 * MiB))
    upload_file.fn(bucket, src, "once", if_not_exists=True)
    with pytest.raises(Conflict):
        upload_file.fn(bucket, src, "once", if_not_exists=True)  # multipart: on Complete
    with pytest.raises(Conflict):
        upload_bytes.fn(bucket, b"second", "once", if_not_exists=True)  # single PUT
    assert stat.fn(bucket, "once").size == 9 * MiB


@pytest.mark.parametrize("algorithm", ["CRC32", "SHA1", "SHA256"])
def test_checksum_algorithms_and_put_options(
    bucket: S3Bucket, algorithm: str, raw_client: Any
) -> None:
    configured = bucket.model_copy(
        update={
            "checksum_algorithm": algorithm,
            "storage_class": "STANDARD",
            "extra_put_args": {"ContentType": "application/x-test", "Metadata": {"origin": "t"}},
        }
    )
    data = pattern(17 * MiB, 5)
    info = upload_bytes.fn(configured, data, "ck/multi")
    upload_bytes.fn(configured, b"small", "ck/single")
    assert info.etag.endswith("-3")
    head = raw_client.head_object(Bucket=bucket.bucket_name, Key="ck/multi")
    assert head["ContentType"] == "application/x-test"
    assert head["Metadata"] == {"origin": "t"}
    assert download_bytes.fn(bucket, "ck/multi") == data


def test_unknown_bucket_and_plugin_check(bucket: S3Bucket) -> None:
    from flowport_s3.plugin import check

    assert bucket.bucket_name in check(bucket)
    missing = bucket.model_copy(update={"bucket_name": "no-such-bucket-here"})
    with pytest.raises(NotFound, match="no-such-bucket-here"):
        check(missing)
    name = f"s3-check-{uuid.uuid4().hex[:8]}"
    bucket.save(name, overwrite=True)
    assert flowport_cli(["check", "s3", "--block", name]) == 0


def test_download_into_directory_refuses_traversal_on_real_server(
    bucket: S3Bucket, tmp_path: Path
) -> None:
    target = tmp_path / "downloads"
    target.mkdir()
    upload_bytes.fn(bucket, b"inside", "escape")
    for key in ("../escape", "a/../../escape", "/escape"):
        with pytest.raises(InvalidInput):
            download_file.fn(bucket, key, directory=target)
    assert list(tmp_path.rglob("*")) == [target]
    assert not (tmp_path / "escape").exists()


def test_get_stream_bounded_chunks(bucket: S3Bucket) -> None:
    data = pattern(10 * MiB + 1, 9)
    store = S3Store(bucket)
    store.put_bytes(data, "gs")
    sizes = [len(c) for c in store.get_stream("gs", chunk_size=MiB)]
    assert max(sizes) <= MiB and sum(sizes) == len(data)
    assert sha256_of(store.get_stream("gs")) == hashlib.sha256(data).hexdigest()


def _count_calls(bucket: S3Bucket) -> tuple[list[str], Any]:
    """Every S3 operation the block's client sends, by name (a botocore event hook)."""
    calls: list[str] = []

    def record(model: Any, **_: Any) -> None:
        calls.append(model.name)

    bucket.client().meta.events.register("before-call.s3.*", record)
    return calls, record


@pytest.mark.parametrize("size", [5, 20 * MiB + 1], ids=["single-get", "ranged-gets"])
def test_download_file_sends_one_head_object(bucket: S3Bucket, tmp_path: Path, size: int) -> None:
    data = pattern(size, 4)
    S3Store(bucket).put_bytes(data, "once/obj")
    calls, record = _count_calls(bucket)
    try:
        path = download_file.fn(bucket, "once/obj", tmp_path / "obj")
    finally:
        bucket.client().meta.events.unregister("before-call.s3.*", record)
    assert Path(path).read_bytes() == data
    assert calls.count("HeadObject") == 1, calls
    assert set(calls) == {"HeadObject", "GetObject"}


def _info_lines(caplog: pytest.LogCaptureFixture, uri: str) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.INFO and uri in r.getMessage()
    ]


def test_each_transfer_logs_one_info_line(
    bucket: S3Bucket, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """One INFO line per transfer, naming the object as a URI, the bytes and the seconds."""
    caplog.set_level(logging.INFO)
    src = tmp_path / "in.bin"
    src.write_bytes(b"x" * 1234)
    uri = f"s3://{bucket.bucket_name}"
    upload_file.fn(bucket, src, "log/up.bin")
    download_file.fn(bucket, "log/up.bin", tmp_path / "out.bin")
    upload_bytes.fn(bucket, b"abc", "log/bytes")
    assert download_bytes.fn(bucket, "log/bytes") == b"abc"
    copy_object.fn(bucket, "log/bytes", "log/copied")
    up, down = _info_lines(caplog, f"{uri}/log/up.bin")
    assert re.fullmatch(rf"upload {uri}/log/up.bin: .*1\.2 KiB.* in [0-9.]+ s", up), up
    assert re.fullmatch(rf"download {uri}/log/up.bin: .*1\.2 KiB.* in [0-9.]+ s", down), down
    assert len(_info_lines(caplog, f"{uri}/log/bytes")) == 3  # upload, download, copy source
    assert len(_info_lines(caplog, f"{uri}/log/copied")) == 1


def test_artifact_key_names_flow_and_bucket(bucket: S3Bucket, raw_client: Any) -> None:
    """Two flows writing to two buckets keep separate artifact histories."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    other = bucket.model_copy(update={"bucket_name": f"t-{uuid.uuid4().hex[:20]}"})
    raw_client.create_bucket(Bucket=other.bucket_name)

    @flow(name="nightly-a")
    def first() -> None:
        upload_bytes(bucket, b"1", "k")

    @flow(name="nightly-b")
    def second() -> None:
        upload_bytes(other, b"2", "k")

    first()
    second()
    raw_client.delete_object(Bucket=other.bucket_name, Key="k")
    raw_client.delete_bucket(Bucket=other.bucket_name)
    keys = [
        f"flowport-nightly-a-upload-bytes-s3-{bucket.bucket_name}",
        f"flowport-nightly-b-upload-bytes-s3-{other.bucket_name}",
    ]

    async def read() -> list[Any]:
        async with get_client() as client:
            return await client.read_artifacts(
                artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=keys))
            )

    import anyio

    found = {a.key: str(a.data) for a in anyio.run(read)}
    assert set(found) == set(keys)
    assert f"s3://{other.bucket_name}/k" in found[keys[1]]
