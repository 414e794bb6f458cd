"""Every task inside real Prefect flows against fake-gcs-server."""

from __future__ import annotations

import io
import logging
import os
import re
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from prefect import flow

import flowport_gcs as gcs
from flowport.errors import Conflict, DeliveryError, InvalidInput, NotFound
from flowport.store import sha256_of
from flowport_gcs import GcsBucket

pytestmark = pytest.mark.usefixtures("prefect_server")


def test_round_trip_of_every_transfer_task(gcs_block: GcsBucket, tmp_path: Path) -> None:
    src = tmp_path / "in.bin"
    src.write_bytes(os.urandom(3 * 1024 * 1024 + 11))  # resumable: 4 chunks
    out = tmp_path / "out"

    @flow
    def transfers() -> dict[str, object]:
        up = gcs.upload_file(gcs_block, src, "data/in.bin")
        named = gcs.upload_file(gcs_block, src)  # key defaults to the file name
        gcs.upload_bytes(gcs_block, b"small", "data/small.txt", content_type="text/plain")
        gcs.upload_stream(gcs_block, (b"ab" for _ in range(10)), "data/stream.txt")
        path = gcs.download_file(gcs_block, "data/in.bin", out / "copy.bin")
        in_dir = gcs.download_file(gcs_block, "data/small.txt", directory=out)
        sink = io.BytesIO()
        streamed = gcs.download_stream(gcs_block, "data/in.bin", sink, chunk_size=1 << 20)
        return {
            "up": up,
            "named": named.key,
            "path": path,
            "in_dir": in_dir,
            "bytes": gcs.download_bytes(gcs_block, "data/small.txt"),
            "stream_text": gcs.download_bytes(gcs_block, "data/stream.txt"),
            "streamed": streamed,
            "sink": sink.getvalue(),
        }

    got = transfers()
    assert got["up"].size == src.stat().st_size  # type: ignore[attr-defined]
    assert got["named"] == "in.bin"
    assert Path(got["path"]).read_bytes() == src.read_bytes()  # type: ignore[arg-type]
    assert got["in_dir"] == out / "data" / "small.txt"
    assert got["bytes"] == b"small"
    assert got["stream_text"] == b"ab" * 10
    assert got["streamed"] == src.stat().st_size
    assert got["sink"] == src.read_bytes()


def test_listing_stat_copy_move_delete(gcs_block: GcsBucket) -> None:
    @flow
    def manage() -> dict[str, object]:
        for name in ["a/1.csv", "a/2.csv", "a/sub/3.csv", "b/4.txt"]:
            gcs.upload_bytes(gcs_block, name.encode(), name)
        listed = [i.key for i in gcs.list_objects(gcs_block, "a/")]
        csv = [i.key for i in gcs.list_objects(gcs_block, glob="**.csv")]
        shallow = [(i.key, i.is_prefix) for i in gcs.list_objects(gcs_block, "a/", recursive=False)]
        limited = gcs.list_objects(gcs_block, limit=2)
        copied = gcs.copy_object(gcs_block, "a/1.csv", "c/1.csv")
        moved = gcs.move_object(gcs_block, "b/4.txt", "c/4.txt")
        deleted = gcs.delete_objects(gcs_block, ["a/1.csv", "a/2.csv", "never-there"])
        return {
            "listed": listed,
            "csv": csv,
            "shallow": shallow,
            "limited": len(limited),
            "copied": copied.key,
            "moved": moved.key,
            "b_gone": not gcs.exists(gcs_block, "b/4.txt"),
            "stat": gcs.stat(gcs_block, "c/4.txt").size,
            "deleted": sorted(deleted.deleted),
            "left": [i.key for i in gcs.list_objects(gcs_block)],
        }

    got = manage()
    assert got["listed"] == ["a/1.csv", "a/2.csv", "a/sub/3.csv"]
    assert got["csv"] == ["a/1.csv", "a/2.csv", "a/sub/3.csv"]
    assert got["shallow"] == [("a/1.csv", False), ("a/2.csv", False), ("a/sub/", True)]
    assert got["limited"] == 2
    assert (got["copied"], got["moved"], got["b_gone"], got["stat"]) == (
        "c/1.csv",
        "c/4.txt",
        True,
        7,
    )
    assert got["deleted"] == ["a/1.csv", "a/2.csv", "never-there"]
    assert got["left"] == ["a/sub/3.csv", "c/1.csv", "c/4.txt"]


def test_copy_to_another_bucket_and_missing_source(
    gcs_block: GcsBucket,
    gcs_server: Any,
    tmp_path: Path,
) -> None:
    other_name = gcs_block.bucket + "-x"
    gcs_server.client().create_bucket(other_name)
    other = gcs_block.model_copy(update={"bucket": other_name})
    gcs.upload_bytes.fn(gcs_block, b"payload", "k")
    info = gcs.copy_object.fn(gcs_block, "k", "copied/k", dest_bucket=other)
    assert info.key == "copied/k"
    assert gcs.download_bytes.fn(other, "copied/k") == b"payload"
    with pytest.raises(NotFound, match="copy source"):
        gcs.copy_object.fn(gcs_block, "absent", "x")


def test_delete_objects_raises_delivery_error_for_bad_keys(gcs_block: GcsBucket) -> None:
    gcs.upload_bytes.fn(gcs_block, b"1", "ok")
    with pytest.raises(DeliveryError, match="1 of 2"):
        gcs.delete_objects.fn(gcs_block, ["ok", "../escape"])
    assert not gcs.exists.fn(gcs_block, "ok")
    result = gcs.delete_objects.fn(gcs_block, ["../escape"], raise_on_error=False)
    assert list(result.errors) == ["../escape"]


def test_preconditions_and_metadata(gcs_block: GcsBucket) -> None:
    first = gcs.upload_bytes.fn(gcs_block, b"v1", "doc", if_not_exists=True)
    assert first.size == 2
    meta = gcs.object_metadata.fn(gcs_block, "doc")
    assert meta["generation"] and meta["metageneration"] == 1
    with pytest.raises(Conflict):
        gcs.upload_bytes.fn(gcs_block, b"v2", "doc", if_not_exists=True)
    with pytest.raises(Conflict):  # a stale generation
        gcs.upload_bytes.fn(
            gcs_block, b"v2", "doc", if_generation_match=int(meta["generation"]) + 1
        )
    gcs.upload_bytes.fn(gcs_block, b"v2", "doc", if_generation_match=int(meta["generation"]))
    assert gcs.download_bytes.fn(gcs_block, "doc") == b"v2"


def test_compose_and_parallel_composite_upload(gcs_block: GcsBucket, tmp_path: Path) -> None:
    for i in range(3):
        gcs.upload_bytes.fn(gcs_block, f"part{i};".encode(), f"parts/{i}")
    joined = gcs.compose_objects.fn(gcs_block, [f"parts/{i}" for i in range(3)], "joined")
    assert joined.size == len(b"part0;part1;part2;")
    assert gcs.download_bytes.fn(gcs_block, "joined") == b"part0;part1;part2;"

    src = tmp_path / "big.bin"
    src.write_bytes(os.urandom(6 * 1024 * 1024 + 3))
    block = gcs_block.model_copy(update={"composite_threshold": 4 * 1024 * 1024, "concurrency": 2})
    store = block.store()
    info = store.put_file(src, "composite.bin")
    assert info.size == src.stat().st_size
    assert store.last_upload is not None and store.last_upload.composite_parts >= 2
    assert sha256_of(store.get_stream("composite.bin")) == sha256_of([src.read_bytes()])
    assert [i.key for i in store.list()] == sorted(
        ["composite.bin", "joined", *[f"parts/{i}" for i in range(3)]]
    )  # no leftover parts


def test_sync_both_ways(gcs_block: GcsBucket, tmp_path: Path) -> None:
    up = tmp_path / "up"
    (up / "sub").mkdir(parents=True)
    (up / "a.txt").write_bytes(b"a")
    (up / "sub" / "b.txt").write_bytes(b"bb")

    @flow
    def sync_flow() -> list[gcs.SyncResult]:
        first = gcs.sync(gcs_block, up, "mirror")
        again = gcs.sync(gcs_block, up, "mirror", compare="crc32c")
        (up / "a.txt").write_bytes(b"changed")
        (up / "sub" / "b.txt").unlink()
        dry = gcs.sync(gcs_block, up, "mirror", delete=True, dry_run=True)
        real = gcs.sync(gcs_block, up, "mirror", delete=True)
        down = gcs.sync(gcs_block, tmp_path / "down", "mirror", direction="download")
        down_again = gcs.sync(gcs_block, tmp_path / "down", "mirror", direction="download")
        return [first, again, dry, real, down, down_again]

    first, again, dry, real, down, down_again = sync_flow()
    assert first.transferred == ["a.txt", "sub/b.txt"] and first.bytes == 3
    assert again.transferred == [] and again.skipped == ["a.txt", "sub/b.txt"]
    assert dry.transferred == ["a.txt"] and dry.deleted == ["sub/b.txt"]
    assert real.transferred == ["a.txt"] and real.deleted == ["sub/b.txt"]
    assert [i.key for i in gcs.list_objects.fn(gcs_block, "mirror/")] == ["mirror/a.txt"]
    assert down.transferred == ["a.txt"]
    assert (tmp_path / "down" / "a.txt").read_bytes() == b"changed"
    assert down_again.transferred == [] and down_again.skipped == ["a.txt"]


def test_sync_download_refuses_keys_leaving_the_directory(
    gcs_block: GcsBucket,
    gcs_server: Any,
    tmp_path: Path,
) -> None:
    # Written with the raw client: flowport itself refuses to create such a key.
    raw = gcs_server.client().bucket(gcs_block.bucket)
    raw.blob("evil/ok.txt").upload_from_string(b"fine")
    raw.blob("evil/../../escape.txt").upload_from_string(b"bad")
    target = tmp_path / "inside" / "dir"
    with pytest.raises(InvalidInput):
        gcs.sync.fn(gcs_block, target, "evil", direction="download")
    assert not (tmp_path / "escape.txt").exists()
    assert not target.exists() or list(target.rglob("*")) == []  # nothing written at all
    with pytest.raises(InvalidInput):
        gcs.download_file.fn(gcs_block, "../escape.txt", directory=target)


def test_presigned_url_is_served(gcs_block: GcsBucket) -> None:
    gcs.upload_bytes.fn(gcs_block, b"signed!", "share/me.txt")
    url = gcs.presigned_url.fn(gcs_block, "share/me.txt", expires=120)
    assert "X-Goog-Signature=" in url and "X-Goog-Expires=120" in url
    with urllib.request.urlopen(url, timeout=30) as resp:
        assert resp.read() == b"signed!"


def test_only_object_level_requests(gcs_block: GcsBucket, gcs_server: Any, tmp_path: Path) -> None:
    """No bucket-metadata GET (prefect-gcp's get_bucket()): object permissions are enough."""
    before = len(gcs_server.requests_log())
    gcs.upload_bytes.fn(gcs_block, b"x" * 10, "perm/k")
    gcs.download_bytes.fn(gcs_block, "perm/k")
    gcs.download_file.fn(gcs_block, "perm/k", tmp_path / "k")
    gcs.stat.fn(gcs_block, "perm/k")
    lines = gcs_server.requests_log()[before:]
    mine = [line for line in lines if gcs_block.bucket in line]
    assert mine, "the emulator logged no request of this test"
    bucket_get = f"GET /storage/v1/b/{gcs_block.bucket}?"
    bucket_get_plain = f"GET /storage/v1/b/{gcs_block.bucket} "
    assert not [line for line in mine if bucket_get in line or bucket_get_plain in line]


def test_check_and_missing_objects(gcs_block: GcsBucket) -> None:
    from flowport_gcs.plugin import check

    assert "answers a listing" in check(gcs_block)
    with pytest.raises(NotFound):
        gcs.stat.fn(gcs_block, "nope")
    assert gcs.exists.fn(gcs_block, "nope") is False
    missing_bucket = gcs_block.model_copy(update={"bucket": gcs_block.bucket + "-missing"})
    with pytest.raises(NotFound):
        gcs.upload_bytes.fn(missing_bucket, b"x", "k")


def _info_lines(caplog: pytest.LogCaptureFixture, uri: str) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.INFO and uri in r.getMessage()
    ]


def test_each_transfer_logs_one_info_line(
    gcs_block: GcsBucket, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """One INFO line per transfer, naming the object as a URI, the bytes and the seconds;
    resumable (multi-chunk) and simple uploads alike."""
    caplog.set_level(logging.INFO)
    uri = f"gs://{gcs_block.bucket}"
    for name, size in (("small.bin", 1234), ("big.bin", 3 * 1024 * 1024 + 5)):
        src = tmp_path / name
        src.write_bytes(os.urandom(size))
        gcs.upload_file.fn(gcs_block, src, f"log/{name}")
        gcs.download_file.fn(gcs_block, f"log/{name}", tmp_path / "out" / name)
        up, down = _info_lines(caplog, f"{uri}/log/{name}")
        assert re.fullmatch(rf"upload {uri}/log/{name}: .+ in [0-9.]+ s", up), up
        assert re.fullmatch(rf"download {uri}/log/{name}: .+ in [0-9.]+ s", down), down
    gcs.upload_bytes.fn(gcs_block, b"abc", "log/bytes")
    assert gcs.download_bytes.fn(gcs_block, "log/bytes") == b"abc"
    gcs.copy_object.fn(gcs_block, "log/bytes", "log/copied")
    assert len(_info_lines(caplog, f"{uri}/log/bytes")) == 3  # upload, download, copy source
    (copied,) = _info_lines(caplog, f"{uri}/log/copied")
    assert re.fullmatch(rf"copy {uri}/log/bytes to {uri}/log/copied: .+ in [0-9.]+ s", copied)


def test_artifact_key_names_flow_and_bucket(gcs_block: GcsBucket, gcs_server: Any) -> None:
    """Two flows writing to two buckets keep separate artifact histories."""
    import uuid

    import anyio
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    other = gcs_block.model_copy(update={"bucket": f"fp-{uuid.uuid4().hex[:16]}"})
    gcs_server.client().create_bucket(other.bucket)

    @flow(name="nightly-a")
    def first() -> None:
        gcs.upload_bytes(gcs_block, b"1", "k")

    @flow(name="nightly-b")
    def second() -> None:
        gcs.upload_bytes(other, b"2", "k")

    first()
    second()
    keys = [
        f"flowport-nightly-a-upload-bytes-gs-{gcs_block.bucket}",
        f"flowport-nightly-b-upload-bytes-gs-{other.bucket}",
    ]

    async def read() -> list[Any]:
        async with get_client() as client:
            return await client.read_artifacts(
                artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=keys))
            )

    found = {a.key: str(a.data) for a in anyio.run(read)}
    assert set(found) == set(keys)
    assert f"gs://{other.bucket}/k" in found[keys[1]]


@pytest.mark.parametrize("size", [2 * 1024 * 1024, 2 * 1024 * 1024 + 1])
def test_unsized_stream_on_and_off_a_chunk_boundary(gcs_block: GcsBucket, size: int) -> None:
    """No look-ahead: a stream that ends exactly on a chunk is closed by an empty request."""
    data = os.urandom(size)
    pieces = (data[i : i + 300_000] for i in range(0, size, 300_000))
    info = gcs.upload_stream.fn(gcs_block, pieces, "edge.bin")
    assert info.size == size
    assert gcs.download_bytes.fn(gcs_block, "edge.bin") == data
