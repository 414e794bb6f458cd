"""The behaviour every :class:`~flowport.store.ObjectStore` shares, tested once.

A connector's ``test_contract.py`` subclasses :class:`ObjectStoreContract` and provides a
``store`` fixture returning an empty store (a fresh bucket or prefix per test)::

    class TestS3Contract(ObjectStoreContract):
        @pytest.fixture
        def store(self, s3_bucket): return S3Store(s3_bucket)
"""

from __future__ import annotations

import hashlib
import os
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from flowport.errors import Conflict, InvalidInput, NotFound
from flowport.store import ObjectStore, sha256_of

TRAVERSAL_KEYS = [
    "../escape",
    "a/../../escape",
    "a/..",
    "/etc/passwd",
    "..\\escape",
    "a\\..\\..\\escape",
    "nul\x00byte",
    "",
    "./a",
    "a//b",
    "C:/windows",
]


def _chunks(total: int, sizes: tuple[int, ...] = (1, 4096, 1 << 20, 333_333)) -> Iterator[bytes]:
    """Deterministic, irregularly sized chunks adding up to ``total`` bytes."""
    sent, i = 0, 0
    while sent < total:
        n = min(sizes[i % len(sizes)], total - sent)
        yield bytes((sent + j) % 251 for j in range(min(n, 256))) * (n // 256) + bytes(n % 256)
        sent += n
        i += 1


class ObjectStoreContract:
    """Inherit and provide a ``store`` fixture. Class attributes tune sizes for slow backends."""

    #: Size of the streaming round trip; large enough to cross multipart thresholds.
    large_size: int = 12 * 1024 * 1024 + 7
    #: Keys written for the listing test; above the backend's page size proves pagination.
    listing_count: int = 25

    # -- bytes, streams, files ------------------------------------------------------

    def test_bytes_round_trip(self, store: ObjectStore) -> None:
        info = store.put_bytes(b"hello flowport", "greeting.txt")
        assert info.key == "greeting.txt"
        assert info.size == 14
        assert store.get_bytes("greeting.txt") == b"hello flowport"

    def test_empty_object(self, store: ObjectStore) -> None:
        store.put_bytes(b"", "empty")
        assert store.get_bytes("empty") == b""
        assert store.stat("empty").size == 0

    def test_overwrite_replaces_content(self, store: ObjectStore) -> None:
        store.put_bytes(b"first", "k")
        store.put_bytes(b"second!", "k")
        assert store.get_bytes("k") == b"second!"
        assert store.stat("k").size == 7

    def test_stream_round_trip_large(self, store: ObjectStore) -> None:
        expected = sha256_of(_chunks(self.large_size))
        info = store.put_stream(_chunks(self.large_size), "big/blob.bin")
        assert info.size == self.large_size
        chunk_size = 1 << 20
        sizes: list[int] = []
        digest = hashlib.sha256()
        for chunk in store.get_stream("big/blob.bin", chunk_size=chunk_size):
            sizes.append(len(chunk))
            digest.update(chunk)
        assert digest.hexdigest() == expected
        assert sum(sizes) == self.large_size
        assert max(sizes) <= chunk_size  # bounded chunks: nothing held whole

    def test_put_stream_from_file_object(self, store: ObjectStore, tmp_path: Path) -> None:
        src = tmp_path / "src.bin"
        src.write_bytes(os.urandom(300_001))
        with src.open("rb") as fh:
            store.put_stream(fh, "from-file")
        assert store.get_bytes("from-file") == src.read_bytes()

    def test_file_round_trip(self, store: ObjectStore, tmp_path: Path) -> None:
        src = tmp_path / "in.csv"
        src.write_bytes(b"a,b\n1,2\n" * 1000)
        store.put_file(src, "data/in.csv")
        dst = tmp_path / "out" / "nested" / "in.csv"
        info = store.get_file("data/in.csv", dst)
        assert dst.read_bytes() == src.read_bytes()
        assert info.size == src.stat().st_size

    def test_get_missing_raises_not_found_and_writes_nothing(
        self, store: ObjectStore, tmp_path: Path
    ) -> None:
        with pytest.raises(NotFound):
            store.get_bytes("missing")
        downloads = tmp_path / "downloads"
        downloads.mkdir()
        with pytest.raises(NotFound):
            store.get_file("missing", downloads / "missing")
        assert list(downloads.iterdir()) == []

    def test_open_streams(self, store: ObjectStore) -> None:
        store.put_bytes(b"0123456789", "digits")
        with store.open("digits") as fh:
            assert fh.read(4) == b"0123"
            assert fh.read() == b"456789"

    def test_unicode_and_spaces_in_keys(self, store: ObjectStore) -> None:
        key = "données/été 2026/r\u00e9sum\u00e9 #1.txt"
        store.put_bytes(b"x", key)
        assert store.get_bytes(key) == b"x"
        assert [i.key for i in store.list("données/")] == [key]

    # -- stat, exists ---------------------------------------------------------------

    def test_stat_and_exists(self, store: ObjectStore) -> None:
        store.put_bytes(b"abc", "s/k")
        info = store.stat("s/k")
        assert (info.key, info.size) == ("s/k", 3)
        assert info.last_modified is not None
        assert store.exists("s/k")
        assert not store.exists("s/other")
        with pytest.raises(NotFound):
            store.stat("s/other")

    # -- listing --------------------------------------------------------------------

    def test_list_prefix_is_lazy_and_complete(self, store: ObjectStore) -> None:
        keys = sorted(f"many/{i:04d}.json" for i in range(self.listing_count))
        for key in keys:
            store.put_bytes(b"{}", key)
        store.put_bytes(b"no", "other/x.json")
        listing = store.list("many/")
        assert iter(listing) is listing  # an iterator: pages are fetched as consumed
        assert [i.key for i in listing] == keys
        assert all(i.size == 2 for i in store.list("many/"))

    def test_list_glob_and_delimiter(self, store: ObjectStore) -> None:
        for key in ["t/a.csv", "t/b.txt", "t/sub/c.csv", "t/sub/deep/d.csv"]:
            store.put_bytes(b"1", key)
        assert [i.key for i in store.list("t/", glob="t/*.csv")] == ["t/a.csv"]
        assert [i.key for i in store.list("t/", glob="t/**.csv")] == [
            "t/a.csv",
            "t/sub/c.csv",
            "t/sub/deep/d.csv",
        ]
        shallow = list(store.list("t/", recursive=False))
        assert [(i.key, i.is_prefix) for i in shallow] == [
            ("t/a.csv", False),
            ("t/b.txt", False),
            ("t/sub/", True),
        ]

    def test_list_empty_prefix(self, store: ObjectStore) -> None:
        assert list(store.list("nothing-here/")) == []

    # -- delete, copy, move ---------------------------------------------------------

    def test_delete_and_delete_missing(self, store: ObjectStore) -> None:
        store.put_bytes(b"x", "d/k")
        store.delete("d/k")
        assert not store.exists("d/k")
        store.delete("d/k")  # deleting what is gone is not an error

    def test_delete_many(self, store: ObjectStore) -> None:
        keys = [f"dm/{i}" for i in range(7)]
        for key in keys:
            store.put_bytes(b"x", key)
        result = store.delete_many([*keys, "dm/never-existed"])
        assert result.errors == {}
        assert set(keys) <= set(result.deleted)
        assert list(store.list("dm/")) == []

    def test_copy_and_move(self, store: ObjectStore) -> None:
        store.put_bytes(b"payload", "c/src")
        store.copy("c/src", "c/copy")
        assert store.get_bytes("c/copy") == b"payload"
        assert store.exists("c/src")
        store.move("c/src", "c/moved")
        assert store.get_bytes("c/moved") == b"payload"
        assert not store.exists("c/src")
        with pytest.raises(NotFound):
            store.copy("c/absent", "c/x")

    # -- create-only writes ---------------------------------------------------------

    def test_if_not_exists(self, store: ObjectStore) -> None:
        store.put_bytes(b"first", "once", if_not_exists=True)
        with pytest.raises(Conflict):
            store.put_bytes(b"second", "once", if_not_exists=True)
        assert store.get_bytes("once") == b"first"

    # -- presigned URLs -------------------------------------------------------------

    def test_presigned_get(self, store: ObjectStore) -> None:
        store.put_bytes(b"signed content", "p/k.txt")
        url = store.presign("p/k.txt", expires=300)
        with urllib.request.urlopen(url, timeout=30) as resp:  # noqa: S310 - test URL
            assert resp.read() == b"signed content"

    # -- safety ---------------------------------------------------------------------

    @pytest.mark.parametrize("key", TRAVERSAL_KEYS)
    def test_unsafe_keys_refused(self, store: ObjectStore, key: str, tmp_path: Path) -> None:
        downloads = tmp_path / "downloads"
        downloads.mkdir()
        for call in (
            lambda: store.put_bytes(b"x", key),
            lambda: store.get_bytes(key),
            lambda: store.stat(key),
            lambda: store.delete(key),
            lambda: store.get_file(key, downloads / "out"),
        ):
            with pytest.raises(InvalidInput):
                call()
        store.put_bytes(b"x", "safe")
        with pytest.raises(InvalidInput):
            store.copy("safe", key)
        assert [i.key for i in store.list()] == ["safe"]
        assert list(downloads.iterdir()) == []
