"""flowport.store_tasks: the shared store tasks over a LocalStore, via ``.fn`` (no server)."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import pytest

from flowport import NotFound, store_tasks
from flowport.store import LocalStore


class LocalTask(store_tasks.StoreTask):
    """A connector in miniature: the "bucket" is a directory."""

    tags = ("flowport", "local")

    def is_transient(self, exc: BaseException) -> bool:
        return False

    def store(self, bucket: Any) -> LocalStore:
        return LocalStore(bucket)


class ListObjects(LocalTask, store_tasks.ListObjects):
    """List local objects."""


class Exists(LocalTask, store_tasks.Exists):
    """Whether a local object exists."""


class Stat(LocalTask, store_tasks.Stat):
    """Stat a local object."""


class DownloadBytes(LocalTask, store_tasks.DownloadBytes):
    """Read a local object."""


class PresignedUrl(LocalTask, store_tasks.PresignedUrl):
    """A file:// URL."""


@pytest.fixture
def bucket(tmp_path: Path) -> Path:
    store = LocalStore(tmp_path)
    for key in ("a/1.csv", "a/2.csv", "a/b/3.json", "top.txt"):
        store.put_bytes(key.encode(), key)
    return tmp_path


def test_names_tags_and_signatures_come_from_the_subclass() -> None:
    task = ListObjects()
    assert task.name == "list_objects"
    assert task.prefect_task.tags == {"flowport", "local"}
    assert task.prefect_task.description == "List local objects."
    params = list(inspect.signature(task.fn).parameters)
    assert params == ["bucket", "prefix", "glob", "recursive", "limit", "retry_policy"]
    assert type(task).store is LocalTask.store
    assert type(task).run is store_tasks.ListObjects.run


def test_list_objects(bucket: Path) -> None:
    task = ListObjects()
    assert [o.key for o in task.fn(bucket, "a/")] == ["a/1.csv", "a/2.csv", "a/b/3.json"]
    assert [o.key for o in task.fn(bucket, "a/", glob="a/*.csv")] == ["a/1.csv", "a/2.csv"]
    assert len(task.fn(bucket, limit=2)) == 2
    shallow = [o.key for o in task.fn(bucket, "a/", recursive=False)]
    assert "a/b/" in shallow and "a/b/3.json" not in shallow


def test_exists_stat_download_presign(bucket: Path) -> None:
    assert Exists().fn(bucket, "top.txt") is True
    assert Exists().fn(bucket, "missing") is False
    assert Stat().fn(bucket, "a/1.csv").size == len(b"a/1.csv")
    with pytest.raises(NotFound):
        Stat().fn(bucket, "missing")
    assert DownloadBytes().fn(bucket, "a/b/3.json") == b"a/b/3.json"
    assert PresignedUrl().fn(bucket, "top.txt").startswith("file://")
