"""LocalStore passes the contract every ObjectStore passes."""

from __future__ import annotations

from pathlib import Path

import pytest

from flowport.errors import InvalidInput
from flowport.keys import local_path, matches
from flowport.store import LocalStore
from flowport.testing import ObjectStoreContract


class TestLocalStoreContract(ObjectStoreContract):
    @pytest.fixture
    def store(self, tmp_path: Path) -> LocalStore:
        return LocalStore(tmp_path / "root")


class TestLocalStoreWithPrefixContract(ObjectStoreContract):
    large_size = 2 * 1024 * 1024 + 1

    @pytest.fixture
    def store(self, tmp_path: Path) -> LocalStore:
        return LocalStore(tmp_path / "root", prefix="tenant/a")


def test_prefix_keeps_tenants_apart(tmp_path: Path) -> None:
    a = LocalStore(tmp_path, prefix="a")
    b = LocalStore(tmp_path, prefix="b")
    a.put_bytes(b"1", "k")
    assert not b.exists("k")
    assert (tmp_path / "a" / "k").read_bytes() == b"1"


def test_symlink_escape_refused(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    (root / "link").symlink_to(outside)
    with pytest.raises(InvalidInput):
        local_path(root, "link/secret.txt")


@pytest.mark.parametrize(
    "key,glob,expected",
    [
        ("a.csv", "*.csv", True),
        ("d/a.csv", "*.csv", False),
        ("d/a.csv", "**.csv", True),
        ("d/e/a.csv", "d/**/a.csv", True),
        ("a.csv", None, True),
        ("a.cs", "a.cs?", False),
    ],
)
def test_glob(key: str, glob: str | None, expected: bool) -> None:
    assert matches(key, glob) is expected
