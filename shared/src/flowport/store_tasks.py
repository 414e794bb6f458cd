"""Object-store tasks whose body is the same on every connector, written once.

A connector subclasses :class:`StoreTask` (supplying ``is_transient`` and ``store(bucket)``),
then declares each shared task by mixing its base with the generic class here::

    class ListObjects(S3Task, store_tasks.ListObjects):
        \"\"\"...\"\"\"

The connector's base comes first in the MRO, so its ``store``/``is_transient`` win, while ``run``
(and so the Prefect signature and the snake_case task name of the subclass) comes from here.
"""

from __future__ import annotations

import abc
import time
from pathlib import Path
from typing import Any, Literal

from prefect.blocks.core import Block

from flowport.artifacts import summarise
from flowport.keys import local_path
from flowport.lineage import Lineage, file_uri, store_uri
from flowport.progress import Progress
from flowport.store import BaseStore, ObjectInfo
from flowport.task import RetryingTask


class StoreTask(RetryingTask):
    """Base of object-store tasks: ``store(bucket)`` gives a store bound to the call's retrier."""

    @abc.abstractmethod
    def store(self, bucket: Any) -> BaseStore:
        """A store for ``bucket`` using this call's retrier (capture it before using threads)."""

    def transfer_row(
        self, store: BaseStore, key: str, size: int, started: float, **extra: Any
    ) -> None:
        """Publish the summary artifact row of one object transferred since ``started``."""
        seconds = round(time.perf_counter() - started, 3)
        url = store.url_for(key)
        row = {"object": url, "objects": 1, "bytes": size, **extra}
        # Keyed by the bucket (and prefix): one artifact history per flow, task and bucket.
        summarise(self.name, [{**row, "seconds": seconds}], target=url.removesuffix(key))

    def uri(self, bucket: Any, key: str = "") -> str:
        """The URI of ``key`` (or the bucket's root) in ``bucket``: what lineage names."""
        return store_uri(self.store(bucket), key)


class DownloadBytes(StoreTask):
    """Download a whole object into memory."""

    def run(self, bucket: Block, key: str) -> bytes:
        started = time.perf_counter()
        store = self.store(bucket)
        with Progress(f"download {store.url_for(key)}", None) as bar:
            data = store.get_bytes(key)
            bar.advance(len(data))
        self.transfer_row(store, key, len(data), started)
        return data

    def lineage(self, arguments: dict[str, Any], result: bytes | None) -> Lineage:
        return Lineage(reads=[self.uri(arguments["bucket"], arguments["key"])])


class ListObjects(StoreTask):
    """List objects under ``prefix``, filtered by ``glob``; ``limit`` stops early."""

    def run(
        self,
        bucket: Block,
        prefix: str = "",
        *,
        glob: str | None = None,
        recursive: bool = True,
        limit: int | None = None,
    ) -> list[ObjectInfo]:
        out: list[ObjectInfo] = []
        for info in self.store(bucket).list(prefix, glob=glob, recursive=recursive):
            if limit is not None and len(out) >= limit:
                break
            out.append(info)
        return out


class PresignedUrl(StoreTask):
    """A presigned GET or PUT URL for ``key``, valid for ``expires`` seconds."""

    def run(
        self,
        bucket: Block,
        key: str,
        *,
        method: Literal["GET", "PUT"] = "GET",
        expires: int = 3600,
    ) -> str:
        return self.store(bucket).presign(key, method=method, expires=expires)


class Exists(StoreTask):
    """True when ``key`` exists."""

    def run(self, bucket: Block, key: str) -> bool:
        return self.store(bucket).exists(key)


class Stat(StoreTask):
    """Size, ETag and modification time of ``key``; NotFound if absent."""

    def run(self, bucket: Block, key: str) -> ObjectInfo:
        return self.store(bucket).stat(key)


# -- lineage of the connectors' own object tasks (assign as ``lineage = upload_lineage``) ------


def upload_lineage(task: StoreTask, arguments: dict[str, Any], result: Any) -> Lineage:
    """upload_file / upload_bytes / upload_stream: the object, from the local file if any."""
    path = arguments.get("path")
    key = arguments.get("key") or Path(str(path)).name
    return Lineage(
        reads=[file_uri(path)] if path is not None else [],
        writes=[task.uri(arguments["bucket"], key)],
        metadata={"bytes": result.size} if isinstance(result, ObjectInfo) else {},
    )


def download_lineage(task: StoreTask, arguments: dict[str, Any], result: Any) -> Lineage:
    """download_file / download_stream: the object, into the local file if any."""
    key = arguments["key"]
    if isinstance(result, Path):
        writes = [file_uri(result)]
    elif arguments.get("path") is not None:
        writes = [file_uri(arguments["path"])]
    elif arguments.get("directory") is not None:
        writes = [file_uri(local_path(arguments["directory"], key))]
    else:
        writes = []  # a stream into the caller's sink: only the read is known
    metadata = {"bytes": result} if isinstance(result, int) else {}
    return Lineage(reads=[task.uri(arguments["bucket"], key)], writes=writes, metadata=metadata)


def copy_lineage(task: StoreTask, arguments: dict[str, Any], result: Any) -> Lineage:
    """copy_object / move_object: ``src`` in the bucket to ``dst`` in ``dest_bucket`` (or it)."""
    bucket = arguments["bucket"]
    dest = arguments.get("dest_bucket") or bucket
    return Lineage(
        reads=[task.uri(bucket, arguments["src"])],
        writes=[task.uri(dest, arguments["dst"])],
        metadata={"bytes": result.size} if isinstance(result, ObjectInfo) else {},
    )


def sync_lineage(task: StoreTask, arguments: dict[str, Any], result: Any) -> Lineage | None:
    """sync: the local directory and the prefix, in the direction given; a dry run moves
    nothing and reports nothing."""
    if arguments.get("dry_run"):
        return None
    local = file_uri(arguments["local_dir"])
    remote = task.uri(arguments["bucket"], str(arguments.get("prefix") or "").strip("/"))
    upload = arguments.get("direction", "upload") == "upload"
    metadata: dict[str, Any] = {}
    if result is not None:
        metadata = {"objects": len(result.transferred), "bytes": result.bytes}
    return Lineage(
        reads=[local if upload else remote], writes=[remote if upload else local], metadata=metadata
    )
