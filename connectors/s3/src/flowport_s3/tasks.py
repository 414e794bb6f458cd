"""Prebuilt Prefect tasks for S3: RetryingTask subclasses and ready-made instances.

Every task takes an :class:`~flowport_s3.blocks.S3Bucket` first. Each S3 request (one part,
one range, one page, one batch) is retried on its own under the task's ``retry_policy``;
Prefect's task-level ``retries`` stay off. Tasks use ``cache_policy=NO_CACHE``: payloads
(bytes, streams) are never hashed.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, BinaryIO, Literal

from flowport import store_tasks
from flowport.artifacts import summarise
from flowport.errors import DeliveryError, InvalidInput
from flowport.keys import local_path
from flowport.progress import Progress
from flowport.retry import RetryPolicy
from flowport.store import CHUNK_SIZE, DeleteResult, ObjectInfo, Source
from flowport.store_tasks import StoreTask
from flowport_s3 import errors
from flowport_s3.blocks import S3Bucket
from flowport_s3.store import S3_RETRY_POLICY, S3Store, SyncResult


class S3Task(StoreTask):
    """Base of the S3 tasks: the transient predicate and a store bound to the call's retrier."""

    tags = ("flowport", "s3")
    retry_policy: RetryPolicy = S3_RETRY_POLICY

    def is_transient(self, exc: BaseException) -> bool:
        return errors.is_transient(exc)

    def store(self, bucket: S3Bucket, **options: Any) -> S3Store:
        """An S3Store using this call's retrier (captured here, so worker threads keep it)."""
        return S3Store(bucket, retrier=self.retrier, **options)

    def summarise(self, store: S3Store, rows: list[dict[str, Any]], started: float) -> None:
        """The table artifact, keyed by flow, task and bucket (``s3://bucket[/prefix]``)."""
        seconds = round(time.perf_counter() - started, 3)
        rows = [{**row, "seconds": seconds} for row in rows]
        summarise(self.name, rows, target=store.root_url)


def _row(store: S3Store, info: ObjectInfo, **extra: Any) -> dict[str, Any]:
    return {"object": store.url_for(info.key), "objects": 1, "bytes": info.size, **extra}


class UploadFile(S3Task):
    """Upload a local file, multipart above one part (each part retried on its own)."""

    lineage = store_tasks.upload_lineage

    def run(
        self,
        bucket: S3Bucket,
        path: str | os.PathLike[str],
        key: str | None = None,
        *,
        if_not_exists: bool = False,
    ) -> ObjectInfo:
        started = time.perf_counter()
        store = self.store(bucket)
        key = key or Path(path).name
        size = Path(path).stat().st_size
        with Progress(f"upload {store.url_for(key)}", size) as bar:
            info = store.put_file(path, key, if_not_exists=if_not_exists, progress=bar.advance)
        self.summarise(store, [_row(store, info, source=str(path))], started)
        return info


class UploadBytes(S3Task):
    """Upload ``data`` (held in memory by the caller). Not cached: ``data`` is never hashed."""

    lineage = store_tasks.upload_lineage

    def run(
        self, bucket: S3Bucket, data: bytes, key: str, *, if_not_exists: bool = False
    ) -> ObjectInfo:
        started = time.perf_counter()
        store = self.store(bucket)
        with Progress(f"upload {store.url_for(key)}", len(data)) as bar:
            info = store.put_bytes(data, key, if_not_exists=if_not_exists, progress=bar.advance)
        self.summarise(store, [_row(store, info)], started)
        return info


class UploadStream(S3Task):
    """Upload from a binary file object or an iterable of byte chunks, one part at a time, in
    memory bounded by ``(concurrency + 1) * part_size``. Not cached: the source is never hashed."""

    lineage = store_tasks.upload_lineage

    def run(
        self, bucket: S3Bucket, source: Source, key: str, *, if_not_exists: bool = False
    ) -> ObjectInfo:
        started = time.perf_counter()
        store = self.store(bucket)
        with Progress(f"upload {store.url_for(key)}", None) as bar:
            info = store.put_stream(source, key, if_not_exists=if_not_exists, progress=bar.advance)
        self.summarise(store, [_row(store, info)], started)
        return info


class DownloadFile(S3Task):
    """Download an object to ``path``, or to ``directory``/<key> (keys that would escape the
    directory are refused). One HeadObject, then parallel ranged GETs; a failed download
    leaves no partial file."""

    lineage = store_tasks.download_lineage

    def run(
        self,
        bucket: S3Bucket,
        key: str,
        path: str | os.PathLike[str] | None = None,
        *,
        directory: str | os.PathLike[str] | None = None,
    ) -> Path:
        started = time.perf_counter()
        if (path is None) == (directory is None):
            raise InvalidInput(
                "download_file needs exactly one of path= or directory=", system="S3", target=key
            )
        store = self.store(bucket)
        target = Path(path) if path is not None else local_path(directory, key, system="S3")  # type: ignore[arg-type]
        head = store.stat(key)  # the only HeadObject: get_file reuses it
        with Progress(f"download {store.url_for(key)}", head.size) as bar:
            info = store.get_file(key, target, progress=bar.advance, info=head)
        self.summarise(store, [_row(store, info, destination=str(target))], started)
        return target


class DownloadBytes(S3Task, store_tasks.DownloadBytes):
    """Download a whole object into memory (use download_file or download_stream for big ones)."""


class DownloadStream(S3Task):
    """Stream an object into ``sink`` (a writable binary file object, or a callable taking each
    chunk) in chunks of at most ``chunk_size``; a broken connection resumes where it stopped, so
    the sink sees every byte exactly once. Returns the number of bytes written."""

    lineage = store_tasks.download_lineage

    def run(
        self,
        bucket: S3Bucket,
        key: str,
        sink: BinaryIO | Callable[[bytes], Any],
        *,
        chunk_size: int = CHUNK_SIZE,
    ) -> int:
        started = time.perf_counter()
        store = self.store(bucket)
        write = sink.write if hasattr(sink, "write") else sink
        total = 0
        reader = store.open(key)  # NotFound before the sink sees anything; no HeadObject
        size = getattr(reader, "size", None)
        with reader, Progress(f"download {store.url_for(key)}", size) as bar:
            while chunk := reader.read(chunk_size):
                write(chunk)
                total += len(chunk)
                bar.advance(len(chunk))
        row = {"object": store.url_for(key), "objects": 1, "bytes": total}
        self.summarise(store, [row], started)
        return total


class ListObjects(S3Task, store_tasks.ListObjects):
    """List objects under ``prefix``: every page fetched lazily (one retried request each),
    filtered by ``glob`` ('*' within a segment, '**' across); ``recursive=False`` lists one
    level, with sub-prefixes as entries ending in '/'. ``limit`` stops early."""


class DeleteObjects(S3Task):
    """Delete keys with DeleteObjects, 1,000 per request; failures are reported per key. With
    ``raise_on_error`` (default) any failure raises DeliveryError naming the keys."""

    def run(
        self, bucket: S3Bucket, keys: Iterable[str], *, raise_on_error: bool = True
    ) -> DeleteResult:
        started = time.perf_counter()
        store = self.store(bucket)
        result = store.delete_many(keys)
        self.summarise(
            store,
            [
                {
                    "bucket": f"s3://{bucket.bucket_name}",
                    "objects": len(result.deleted),
                    "failed": len(result.errors),
                    "bytes": 0,
                }
            ],
            started,
        )
        if result.errors and raise_on_error:
            shown = "; ".join(f"{k}: {v}" for k, v in list(result.errors.items())[:10])
            raise DeliveryError(
                f"S3 could not delete {len(result.errors)} of "
                f"{len(result.errors) + len(result.deleted)} key(s) in bucket "
                f"'{bucket.bucket_name}': {shown}",
                system="S3",
                target=bucket.bucket_name,
            )
        return result


class CopyObject(S3Task):
    """Server-side copy ``src`` -> ``dst`` (in ``dest_bucket`` if given): CopyObject, or a
    parallel multipart UploadPartCopy above 5 GiB. No bytes pass through this process."""

    lineage = store_tasks.copy_lineage

    def run(
        self, bucket: S3Bucket, src: str, dst: str, *, dest_bucket: S3Bucket | None = None
    ) -> ObjectInfo:
        started = time.perf_counter()
        store = self.store(bucket)
        dest = self.store(dest_bucket) if dest_bucket is not None else store
        with Progress(f"copy {store.url_for(src)} to {dest.url_for(dst)}", None) as bar:
            info = store.copy_to(src, dest, dst, progress=bar.advance)
        self.summarise(dest, [_row(dest, info, source=store.url_for(src))], started)
        return info


class MoveObject(S3Task):
    """Server-side copy, then delete the source (only after the copy succeeded)."""

    lineage = store_tasks.copy_lineage

    def run(
        self, bucket: S3Bucket, src: str, dst: str, *, dest_bucket: S3Bucket | None = None
    ) -> ObjectInfo:
        started = time.perf_counter()
        store = self.store(bucket)
        dest = self.store(dest_bucket) if dest_bucket is not None else store
        with Progress(f"move {store.url_for(src)} to {dest.url_for(dst)}", None) as bar:
            info = store.copy_to(src, dest, dst, progress=bar.advance)
            store.delete(src)
        self.summarise(dest, [_row(dest, info, source=store.url_for(src))], started)
        return info


class Sync(S3Task):
    """Synchronise a local directory and a key prefix, either way (see ``S3Store.sync``):
    by size, then mtime or ETag; ``dry_run`` only reports; ``delete`` removes extraneous files;
    ``concurrency`` files at a time."""

    lineage = store_tasks.sync_lineage

    def run(
        self,
        bucket: S3Bucket,
        local_dir: str | os.PathLike[str],
        prefix: str = "",
        *,
        direction: Literal["upload", "download"] = "upload",
        delete: bool = False,
        dry_run: bool = False,
        compare: Literal["size_mtime", "etag"] = "size_mtime",
        concurrency: int = 4,
    ) -> SyncResult:
        started = time.perf_counter()
        store = self.store(bucket)
        where = "s3://" + "/".join(p for p in (bucket.bucket_name, store.prefix, prefix) if p)
        with Progress(f"sync {direction} {where}", None) as bar:
            result = store.sync(
                local_dir,
                prefix,
                direction=direction,
                delete=delete,
                dry_run=dry_run,
                compare=compare,
                concurrency=concurrency,
                progress=bar.advance,
            )
        self.summarise(
            store,
            [
                {
                    "direction": direction,
                    "local": str(local_dir),
                    "prefix": prefix,
                    "objects": len(result.transferred),
                    "deleted": len(result.deleted),
                    "skipped": len(result.skipped),
                    "bytes": result.bytes,
                    "dry_run": dry_run,
                }
            ],
            started,
        )
        return result


class PresignedUrl(S3Task, store_tasks.PresignedUrl):
    """A presigned GET or PUT URL for ``key``, valid for ``expires`` seconds (at most 7 days)."""


class Exists(S3Task, store_tasks.Exists):
    """True when ``key`` exists (HeadObject)."""


class Stat(S3Task, store_tasks.Stat):
    """Size, ETag and last-modified time of ``key`` (HeadObject); NotFound if absent."""


class CheckBucket(S3Task):
    """HeadBucket: the bucket exists and the credentials may use it."""

    def run(self, bucket: S3Bucket) -> str:
        return self.store(bucket).check()


upload_file = UploadFile()
upload_bytes = UploadBytes()
upload_stream = UploadStream()
download_file = DownloadFile()
download_bytes = DownloadBytes()
download_stream = DownloadStream()
list_objects = ListObjects()
delete_objects = DeleteObjects()
copy_object = CopyObject()
move_object = MoveObject()
sync = Sync()
presigned_url = PresignedUrl()
exists = Exists()
stat = Stat()
check_bucket = CheckBucket()

TASKS = {
    t.name: t
    for t in (
        upload_file,
        upload_bytes,
        upload_stream,
        download_file,
        download_bytes,
        download_stream,
        list_objects,
        delete_objects,
        copy_object,
        move_object,
        sync,
        presigned_url,
        exists,
        stat,
        check_bucket,
    )
}
