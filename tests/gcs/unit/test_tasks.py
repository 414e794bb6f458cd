"""Task names, signatures (shared with flowport-s3), plugin registration, pickling."""

from __future__ import annotations

import inspect
from typing import Any

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


def _run_params(tree: Any) -> dict[str, list[tuple[str, str, str | None]]]:
    """(name, kind, default source) of run() in each class of ``tree`` defining one itself."""
    import ast

    runs: dict[str, list[tuple[str, str, str | None]]] = {}
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, ast.FunctionDef) and item.name == "run":
                    a = item.args
                    positional = a.args[1:]  # drop self
                    defaults = [None] * (len(positional) - len(a.defaults)) + list(a.defaults)
                    params = [
                        (p.arg, "positional", ast.unparse(d) if d is not None else None)
                        for p, d in zip(positional, defaults, strict=True)
                    ]
                    params += [
                        (p.arg, "keyword", ast.unparse(d) if d is not None else None)
                        for p, d in zip(a.kwonlyargs, a.kw_defaults, strict=True)
                    ]
                    runs[node.name] = params
    return runs


def _s3_signatures() -> dict[str, list[tuple[str, str, str | None]]]:
    """(name, kind, default source) of every flowport-s3 task's run(), read from its source.

    A task class without its own run() inherits it from ``store_tasks.<Name>`` (flowport's
    shared store tasks): that run() is read from flowport's source instead.
    """
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[3]
    tree = ast.parse((root / "connectors/s3/src/flowport_s3/tasks.py").read_text())
    shared = _run_params(ast.parse((root / "shared/src/flowport/store_tasks.py").read_text()))
    runs = _run_params(tree)
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name not in runs:
            for base in node.bases:
                if (
                    isinstance(base, ast.Attribute)
                    and isinstance(base.value, ast.Name)
                    and base.value.id == "store_tasks"
                    and base.attr in shared
                ):
                    runs[node.name] = shared[base.attr]
    instances: dict[str, list[tuple[str, str, str | None]]] = {}
    for node in tree.body:
        if (
            isinstance(node, ast.Assign)
            and isinstance(node.value, ast.Call)
            and isinstance(node.value.func, ast.Name)
            and node.value.func.id in runs
        ):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    instances[target.id] = runs[node.value.func.id]
    return instances


def _value(source: str) -> object:
    import ast

    import flowport.store

    try:
        return ast.literal_eval(source)
    except ValueError:  # a named constant such as CHUNK_SIZE
        return getattr(flowport.store, source)


def test_signatures_match_flowport_s3_source() -> None:
    """Every parameter an S3 task has, the GCS task of the same name has too: same position,
    kind and default (GCS may add keyword-only extras such as preconditions)."""
    kinds: dict[Any, str] = {
        inspect.Parameter.POSITIONAL_OR_KEYWORD: "positional",
        inspect.Parameter.KEYWORD_ONLY: "keyword",
    }
    s3 = _s3_signatures()
    assert set(SHARED) <= set(s3), "flowport-s3 lost a shared task"
    for name in SHARED:
        sig = inspect.signature(type(getattr(flowport_gcs, name)).run)
        ours = {p.name: (kinds.get(p.kind), p.default) for p in list(sig.parameters.values())[1:]}
        order = [p for p in ours]
        for i, (param, kind, default) in enumerate(s3[name]):
            assert param in ours, f"{name}: missing {param}"
            assert ours[param][0] == kind, f"{name}.{param}: {ours[param][0]} != {kind}"
            if kind == "positional":
                assert order[i] == param, f"{name}: {param} out of place"
            if default is not None and param != "compare":
                assert ours[param][1] == _value(default), f"{name}.{param}: default differs"
