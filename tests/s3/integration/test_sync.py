"""sync: a local directory <-> a key prefix, both ways, against the real S3 server."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest
from prefect import flow

from flowport.errors import InvalidInput
from flowport_s3 import S3Bucket, S3Store, list_objects, sync

pytestmark = pytest.mark.usefixtures("prefect_server")

MiB = 1024 * 1024


def tree(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def make_tree(root: Path) -> None:
    files = {
        "a.txt": b"alpha",
        "sub/b.csv": b"b,c\n1,2\n",
        "sub/deep/c.bin": os.urandom(9 * MiB),
        "empty": b"",
    }
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)


def test_upload_then_download_round_trip(bucket: S3Bucket, tmp_path: Path) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    make_tree(src)

    @flow
    def both_ways() -> tuple[Any, Any]:
        up = sync(bucket, src, "mirror", direction="upload")
        down = sync(bucket, dst, "mirror", direction="download")
        return up, down

    up, down = both_ways()
    assert up.transferred == ["a.txt", "empty", "sub/b.csv", "sub/deep/c.bin"]
    assert up.bytes == sum(len(v) for v in tree(src).values())
    assert down.transferred == up.transferred
    assert tree(dst) == tree(src)
    assert [i.key for i in list_objects.fn(bucket, "mirror/")] == [
        "mirror/a.txt",
        "mirror/empty",
        "mirror/sub/b.csv",
        "mirror/sub/deep/c.bin",
    ]
    # Nothing changed: both directions skip everything.
    assert sync.fn(bucket, src, "mirror").transferred == []
    again = sync.fn(bucket, dst, "mirror", direction="download")
    assert again.transferred == [] and len(again.skipped) == 4


def test_changed_files_dry_run_and_delete(bucket: S3Bucket, tmp_path: Path) -> None:
    src = tmp_path / "src"
    make_tree(src)
    sync.fn(bucket, src, "m")
    (src / "a.txt").write_bytes(b"alpha, longer now")  # size differs
    (src / "sub/b.csv").unlink()
    (src / "new.txt").write_bytes(b"new")

    plan = sync.fn(bucket, src, "m", delete=True, dry_run=True)
    assert plan.dry_run
    assert plan.transferred == ["a.txt", "new.txt"]
    assert plan.deleted == ["sub/b.csv"]
    store = S3Store(bucket)
    assert store.get_bytes("m/a.txt") == b"alpha"  # dry run changed nothing
    assert store.exists("m/sub/b.csv")

    done = sync.fn(bucket, src, "m", delete=True)
    assert done.transferred == ["a.txt", "new.txt"] and done.deleted == ["sub/b.csv"]
    assert store.get_bytes("m/a.txt") == b"alpha, longer now"
    assert not store.exists("m/sub/b.csv")


def test_newer_local_file_same_size_is_uploaded(bucket: S3Bucket, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_bytes(b"one")
    sync.fn(bucket, src, "t")
    (src / "f").write_bytes(b"two")
    future = time.time() + 3600
    os.utime(src / "f", (future, future))
    assert sync.fn(bucket, src, "t").transferred == ["f"]
    assert S3Store(bucket).get_bytes("t/f") == b"two"


def test_compare_by_etag(bucket: S3Bucket, tmp_path: Path) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    make_tree(src)
    sync.fn(bucket, src, "e")
    sync.fn(bucket, dst, "e", direction="download")
    # Same size, local newer, different content: size_mtime keeps it, etag catches it.
    (dst / "a.txt").write_bytes(b"ALPHA")
    future = time.time() + 3600
    os.utime(dst / "a.txt", (future, future))
    assert sync.fn(bucket, dst, "e", direction="download").transferred == []
    result = sync.fn(bucket, dst, "e", direction="download", compare="etag")
    assert result.transferred == ["a.txt"]  # multipart c.bin matched by its multipart ETag
    assert (dst / "a.txt").read_bytes() == b"alpha"


def test_download_delete_extraneous_local(bucket: S3Bucket, tmp_path: Path) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    make_tree(src)
    sync.fn(bucket, src, "d")
    dst.mkdir()
    (dst / "stale.txt").write_bytes(b"old")
    result = sync.fn(bucket, dst, "d", direction="download", delete=True)
    assert result.deleted == ["stale.txt"]
    assert tree(dst) == tree(src)


def test_sync_refuses_bad_arguments(bucket: S3Bucket, tmp_path: Path) -> None:
    with pytest.raises(InvalidInput):
        sync.fn(bucket, tmp_path, "x", direction="sideways")  # type: ignore[arg-type]
    with pytest.raises(InvalidInput):
        sync.fn(bucket, tmp_path, "../up")
