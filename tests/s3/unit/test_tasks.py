"""Task wiring: names, signatures, pickling, plugin entry point, refused inputs."""

from __future__ import annotations

import inspect
from pathlib import Path

import cloudpickle
import pytest

import flowport_s3
from flowport.errors import InvalidInput
from flowport.plugins import discover_connectors, get_connector
from flowport_s3 import S3Bucket, download_file, upload_file

EXPECTED = {
    "upload_file",
    "upload_bytes",
    "upload_stream",
    "download_file",
    "download_bytes",
    "download_stream",
    "list_objects",
    "delete_objects",
    "copy_object",
    "move_object",
    "sync",
    "presigned_url",
    "exists",
    "stat",
    "check_bucket",
}


def test_plugin_entry_point_lists_every_task() -> None:
    assert "s3" in discover_connectors()
    connector = get_connector("s3")
    assert connector.distribution == "flowport-s3"
    assert set(connector.tasks) == EXPECTED
    assert connector.check_block is S3Bucket
    assert flowport_s3.AwsCredentials in connector.blocks


def test_prefect_collections_entry_point() -> None:
    from importlib.metadata import entry_points

    names = {ep.value for ep in entry_points(group="prefect.collections")}
    assert "flowport_s3.blocks" in names


def test_signatures_and_defaults() -> None:
    params = inspect.signature(upload_file.fn).parameters
    assert list(params) == ["bucket", "path", "key", "if_not_exists", "retry_policy"]
    from prefect.cache_policies import NO_CACHE

    assert upload_file.prefect_task.cache_policy is NO_CACHE  # payloads are never hashed
    assert "flowport" in upload_file.tags and "s3" in upload_file.tags


def test_tasks_survive_cloudpickle() -> None:
    for task in get_connector("s3").tasks.values():
        clone = cloudpickle.loads(cloudpickle.dumps(task))
        assert clone.name == task.name


@pytest.mark.parametrize("key", ["../escape", "a/../../escape", "/etc/passwd", "nul\x00"])
def test_download_into_directory_refuses_traversal(key: str, tmp_path: Path) -> None:
    bucket = S3Bucket(bucket_name="unit-bucket")  # never contacted: refused before any request
    target = tmp_path / "downloads"
    target.mkdir()
    with pytest.raises(InvalidInput):
        download_file.fn(bucket, key, directory=target)
    assert list(tmp_path.rglob("*")) == [target]


def test_download_file_needs_one_destination(tmp_path: Path) -> None:
    bucket = S3Bucket(bucket_name="unit-bucket")
    with pytest.raises(InvalidInput, match="exactly one"):
        download_file.fn(bucket, "k")
    with pytest.raises(InvalidInput, match="exactly one"):
        download_file.fn(bucket, "k", tmp_path / "a", directory=tmp_path)
