"""Task names, signatures (shared with flowport-s3), plugin registration, pickling."""

from __future__ import annotations

import inspect

import cloudpickle
from prefect.cache_policies import NO_CACHE

import flowport_gcs
from flowport.plugins import discover_connectors
from flowport_gcs.tasks import TASKS

# The operations flowport-s3 has too: same names, same leading parameters.
SHARED = {
    "upload_file": ["bucket", "path", "key"],
    "upload_bytes": ["bucket", "data", "key"],
    "upload_stream": ["bucket", "source", "key"],
    "download_file": ["bucket", "key", "path"],
    "download_bytes": ["bucket", "key"],
    "download_stream": ["bucket", "key", "sink"],
    "list_objects": ["bucket", "prefix", "glob", "recursive"],
    "delete_objects": ["bucket", "keys"],
    "copy_object": ["bucket", "src", "dst"],
    "move_object": ["bucket", "src", "dst"],
    "sync": ["bucket", "local_dir", "prefix", "direction", "delete", "dry_run"],
    "presigned_url": ["bucket", "key", "method", "expires"],
    "exists": ["bucket", "key"],
    "stat": ["bucket", "key"],
}


def test_shared_tasks_have_the_agreed_signatures() -> None:
    for name, leading in SHARED.items():
        task = getattr(flowport_gcs, name)
        assert task.name == name
        params = list(inspect.signature(task.fn).parameters)
        assert params[: len(leading)] == leading, name
    sig = inspect.signature(flowport_gcs.list_objects.fn).parameters
    assert (sig["prefix"].default, sig["glob"].default, sig["recursive"].default) == (
        "",
        None,
        True,
    )
    sig = inspect.signature(flowport_gcs.sync.fn).parameters
    assert sig["direction"].default == "upload" and sig["delete"].default is False
    sig = inspect.signature(flowport_gcs.presigned_url.fn).parameters
    assert (sig["method"].default, sig["expires"].default) == ("GET", 3600)


def test_tasks_never_hash_payloads() -> None:
    for task in TASKS.values():
        assert task.prefect_task.cache_policy is NO_CACHE
        assert "gcs" in task.prefect_task.tags


def test_tasks_pickle() -> None:
    for task in TASKS.values():
        copy = cloudpickle.loads(cloudpickle.dumps(task))
        assert copy.name == task.name


def test_connector_is_discovered_by_entry_point() -> None:
    entries = discover_connectors()
    assert "gcs" in entries
    connector = entries["gcs"].load()
    assert connector.distribution == "flowport-gcs"
    assert set(SHARED) <= set(connector.tasks)
    assert connector.check_block is flowport_gcs.GcsBucket
    assert {b.__name__ for b in connector.blocks} == {"GcpCredentials", "GcsBucket"}


def test_prefect_collection_entry_point() -> None:
    from importlib.metadata import entry_points

    names = {ep.value for ep in entry_points(group="prefect.collections")}
    assert "flowport_gcs.blocks" in names
