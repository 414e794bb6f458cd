"""flowport.sync.sync_directory over LocalStore: the algorithm every connector's sync uses."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from flowport.errors import InvalidInput, NotFound
from flowport.parallel import bounded_map
from flowport.store import LocalStore, ObjectInfo
from flowport.sync import SyncResult, local_files, sync_directory


def tree(root: Path, files: dict[str, bytes]) -> Path:
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


def age(path: Path, seconds: float) -> None:
    st = path.stat()
    os.utime(path, (st.st_atime - seconds, st.st_mtime - seconds))


@pytest.fixture
def store(tmp_path: Path) -> LocalStore:
    return LocalStore(tmp_path / "bucket")


def test_local_files_lists_regular_files_without_symlinks(tmp_path: Path) -> None:
    root = tree(tmp_path / "src", {"b.txt": b"b", "a/z.txt": b"z", "a/y.txt": b"y"})
    (root / "link").symlink_to(root / "b.txt")
    assert sorted(local_files(root)) == ["a/y.txt", "a/z.txt", "b.txt"]


def test_upload_then_second_sync_skips_unchanged(store: LocalStore, tmp_path: Path) -> None:
    src = tree(tmp_path / "src", {"a.txt": b"aaa", "d/b.txt": b"bb"})
    first = sync_directory(store, src, "m")
    assert first == SyncResult("upload", transferred=["a.txt", "d/b.txt"], bytes=5)
    assert store.get_bytes("m/d/b.txt") == b"bb"

    again = sync_directory(store, src, "m")
    assert again.transferred == []
    assert again.skipped == ["a.txt", "d/b.txt"]
    assert again.bytes == 0

    (src / "a.txt").write_bytes(b"changed")  # a new size: transferred again
    third = sync_directory(store, src, "m", concurrency=1)
    assert third.transferred == ["a.txt"]
    assert store.get_bytes("m/a.txt") == b"changed"


def test_upload_dry_run_reports_without_writing(store: LocalStore, tmp_path: Path) -> None:
    src = tree(tmp_path / "src", {"a.txt": b"aaa", "b.txt": b"b"})
    store.put_bytes(b"old", "m/extra.txt")
    dry = sync_directory(store, src, "m", delete=True, dry_run=True)
    assert dry.dry_run
    assert dry.transferred == ["a.txt", "b.txt"]
    assert dry.deleted == ["extra.txt"]
    assert dry.bytes == 4
    assert [o.key for o in store.list("m/")] == ["m/extra.txt"]


def test_upload_delete_removes_extraneous_objects(store: LocalStore, tmp_path: Path) -> None:
    src = tree(tmp_path / "src", {"a.txt": b"a"})
    store.put_bytes(b"old", "m/extra.txt")
    store.put_bytes(b"other", "n/kept.txt")
    result = sync_directory(store, src, "m", delete=True)
    assert result.deleted == ["extra.txt"]
    assert [o.key for o in store.list("")] == ["m/a.txt", "n/kept.txt"]


def test_upload_of_a_missing_directory_is_not_found(store: LocalStore, tmp_path: Path) -> None:
    with pytest.raises(NotFound):
        sync_directory(store, tmp_path / "nope", "m")


def test_download_delete_and_second_sync(store: LocalStore, tmp_path: Path) -> None:
    store.put_bytes(b"one", "m/a.txt")
    store.put_bytes(b"two!", "m/d/b.txt")
    dst = tree(tmp_path / "dst", {"stale.txt": b"x"})
    result = sync_directory(store, dst, "m", direction="download", delete=True)
    assert result.transferred == ["a.txt", "d/b.txt"]
    assert result.deleted == ["stale.txt"]
    assert result.bytes == 7
    assert sorted(local_files(dst)) == ["a.txt", "d/b.txt"]
    assert (dst / "d" / "b.txt").read_bytes() == b"two!"
    # the local mtime now equals the object's: nothing to do the second time
    again = sync_directory(store, dst, "m", direction="download")
    assert again.transferred == []
    assert again.skipped == ["a.txt", "d/b.txt"]


def test_download_dry_run_writes_nothing(store: LocalStore, tmp_path: Path) -> None:
    store.put_bytes(b"one", "m/a.txt")
    dst = tree(tmp_path / "dst", {"stale.txt": b"x"})
    dry = sync_directory(store, dst, "m", direction="download", delete=True, dry_run=True)
    assert (dry.transferred, dry.deleted, dry.bytes) == (["a.txt"], ["stale.txt"], 3)
    assert list(local_files(dst)) == ["stale.txt"]


def test_download_only_newer_objects_replace_files(store: LocalStore, tmp_path: Path) -> None:
    store.put_bytes(b"one", "m/a.txt")
    dst = tmp_path / "dst"
    sync_directory(store, dst, "m", direction="download")
    (dst / "a.txt").write_bytes(b"ONE")  # same size, newer locally: kept
    assert sync_directory(store, dst, "m", direction="download").transferred == []
    age(dst / "a.txt", 60)  # now the object is newer: replaced
    assert sync_directory(store, dst, "m", direction="download").transferred == ["a.txt"]
    assert (dst / "a.txt").read_bytes() == b"one"


def test_download_refuses_traversal_before_writing(store: LocalStore, tmp_path: Path) -> None:
    store.put_bytes(b"ok", "m/fine.txt")
    store.put_bytes(b"evil", "m/out/escape.txt")
    dst = tmp_path / "dst"
    dst.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    (dst / "out").symlink_to(outside)  # "out/escape.txt" would land outside dst
    with pytest.raises(InvalidInput, match="escape"):
        sync_directory(store, dst, "m", direction="download")
    assert list(outside.iterdir()) == []
    assert not (dst / "fine.txt").exists()


def test_download_refuses_traversal_keys_of_a_listing(store: LocalStore, tmp_path: Path) -> None:
    listing = [ObjectInfo("m/fine.txt", 2), ObjectInfo("m/../../escape", 4)]
    dst = tmp_path / "in" / "dst"
    with pytest.raises(InvalidInput):
        sync_directory(store, dst, "m", direction="download", listing=listing)
    assert not (tmp_path / "escape").exists()
    assert not dst.exists()


def test_differs_put_and_get_are_pluggable(store: LocalStore, tmp_path: Path) -> None:
    src = tree(tmp_path / "src", {"a.txt": b"a", "b.txt": b"b"})
    sync_directory(store, src, "m")
    seen: list[str] = []

    def put(path: Path, key: str) -> ObjectInfo:
        seen.append(key)
        return store.put_file(path, key)

    result = sync_directory(
        store, src, "m", differs=lambda path, info, upload: path.name == "b.txt", put=put
    )
    assert result.transferred == ["b.txt"]
    assert seen == ["m/b.txt"]


def test_invalid_direction_is_refused(store: LocalStore, tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="direction"):
        sync_directory(store, tmp_path, "m", direction="sideways")


def test_bounded_map_keeps_order_and_raises_the_first_failure() -> None:
    assert bounded_map(range(20), lambda i: i * i, 4) == [i * i for i in range(20)]

    def boom(i: int) -> int:
        if i == 3:
            raise ValueError("three")
        return i

    with pytest.raises(ValueError, match="three"):
        bounded_map(range(50), boom, 4)
