"""Prebuilt Prefect tasks: RetryingTask subclasses and ready-made instances.

Names and signatures match flowport-s3 wherever the operation exists on both, with the
bucket block first: a flow written for S3 runs on GCS by swapping the block. No task retries
a whole transfer: the store retries each request, chunk or page on its own. Tasks run with
``cache_policy=NO_CACHE``: payloads and blocks are never hashed.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, BinaryIO, Literal, cast

from flowport import store_tasks
from flowport.artifacts import summarise
from flowport.errors import DeliveryError, InvalidInput
from flowport.keys import local_path
from flowport.progress import Progress
from flowport.store import CHUNK_SIZE, BaseStore, DeleteResult, ObjectInfo, Source
from flowport.store_tasks import StoreTask
from flowport_gcs import errors
from flowport_gcs.blocks import GcsBucket
from flowport_gcs.lineage import compose_lineage
from flowport_gcs.store import GcsStore, SyncResult


class GcsTask(StoreTask):
    """Base of this connector's tasks: supplies the transient predicate and the store."""

    tags = ("flowport", "gcs")

    def is_transient(self, exc: BaseException) -> bool:
        return errors.is_transient(exc)

    def store(self, bucket: GcsBucket) -> GcsStore:
        """A store retrying under this call's policy (captured here, safe to use in threads)."""
        return GcsStore(bucket, retrier=self.retrier)

    def transfer_row(
        self, store: BaseStore, key: str, size: int, started: float, **extra: Any
    ) -> None:
        seconds = max(time.perf_counter() - started, 1e-9)
        row = {
            "object": store.url_for(key),
            "bytes": size,
            "seconds": round(seconds, 3),
            "objects": 1,
            "MB/s": round(size / seconds / 1e6, 2),
            **extra,
        }
        self.summarise(cast(GcsStore, store), row)

    def summarise(self, store: GcsStore, row: dict[str, Any]) -> None:
        """The table artifact, keyed by flow, task and bucket (``gs://bucket[/prefix]``)."""
        summarise(self.name, [row], target=store.root_url)


class _Upload(GcsTask):
    def _upload(self, bucket: GcsBucket, key: str, size: int | None, put: Any) -> ObjectInfo:
        store = self.store(bucket)
        started = time.perf_counter()
        with Progress(f"upload {store.url_for(key)}", total=size) as progress:
            store.on_bytes = progress.advance
            info: ObjectInfo = put(store)
        stats = store.last_upload
        self.transfer_row(
            store,
            key,
            info.size,
            started,
            chunks=stats.chunks if stats else 0,
            resumed=stats.resumed if stats else 0,
            retries=stats.retries if stats else 0,
            composite_parts=stats.composite_parts if stats else 0,
        )
        return info


class UploadFile(_Upload):
    """Upload a local file to ``key`` (default: the file's name), resumably in ``chunk_size``
    chunks, or as parallel composed parts above the block's ``composite_threshold``. A failed
    chunk resumes where the session stopped, never from byte 0. ``if_not_exists`` (=
    ``if_generation_match=0``) makes it create-only: Conflict if the object exists. Not
    cached: the file is never hashed by Prefect."""

    lineage = store_tasks.upload_lineage

    def run(
        self,
        bucket: GcsBucket,
        path: str | os.PathLike[str],
        key: str | None = None,
        *,
        if_not_exists: bool = False,
        if_generation_match: int | None = None,
        if_metageneration_match: int | None = None,
        content_type: str | None = None,
    ) -> ObjectInfo:
        key = key or Path(path).name
        return self._upload(
            bucket,
            key,
            os.path.getsize(path),
            lambda store: store.put_file(
                path,
                key,
                if_not_exists=if_not_exists,
                if_generation_match=if_generation_match,
                if_metageneration_match=if_metageneration_match,
                content_type=content_type,
            ),
        )


class UploadBytes(_Upload):
    """Upload ``data`` (held in memory by the caller) to ``key``. Not cached: ``data`` is
    never hashed by Prefect."""

    lineage = store_tasks.upload_lineage

    def run(
        self,
        bucket: GcsBucket,
        data: bytes,
        key: str,
        *,
        if_not_exists: bool = False,
        if_generation_match: int | None = None,
        if_metageneration_match: int | None = None,
        content_type: str | None = None,
    ) -> ObjectInfo:
        return self._upload(
            bucket,
            key,
            len(data),
            lambda store: store.put_bytes(
                data,
                key,
                if_not_exists=if_not_exists,
                if_generation_match=if_generation_match,
                if_metageneration_match=if_metageneration_match,
                content_type=content_type,
            ),
        )


class UploadStream(_Upload):
    """Upload from bytes, a binary file object or an iterable of byte chunks, holding at most
    two chunks in memory. Not cached: the stream is never hashed by Prefect."""

    lineage = store_tasks.upload_lineage

    def run(
        self,
        bucket: GcsBucket,
        source: Source,
        key: str,
        *,
        if_not_exists: bool = False,
        if_generation_match: int | None = None,
        if_metageneration_match: int | None = None,
        content_type: str | None = None,
    ) -> ObjectInfo:
        return self._upload(
            bucket,
            key,
            None,
            lambda store: store.put_stream(
                source,
                key,
                if_not_exists=if_not_exists,
                if_generation_match=if_generation_match,
                if_metageneration_match=if_metageneration_match,
                content_type=content_type,
            ),
        )


class DownloadFile(GcsTask):
    """Download ``key`` to ``path``, or to ``directory``/<key> (keys that would escape the
    directory are refused). Atomic: a failed download leaves no partial file; a dropped
    connection resumes at the byte it reached, on the same object generation."""

    lineage = store_tasks.download_lineage

    def run(
        self,
        bucket: GcsBucket,
        key: str,
        path: str | os.PathLike[str] | None = None,
        *,
        directory: str | os.PathLike[str] | None = None,
    ) -> Path:
        if (path is None) == (directory is None):
            raise InvalidInput(
                "download_file needs exactly one of path= or directory=", system="GCS", target=key
            )
        store = self.store(bucket)
        target = Path(path) if path is not None else local_path(directory or ".", key, system="GCS")
        head = store.stat(key)  # the only metadata request: get_file reuses it
        started = time.perf_counter()
        with Progress(f"download {store.url_for(key)}", total=head.size) as progress:
            store.on_bytes = progress.advance
            info = store.get_file(key, target, info=head)
        self.transfer_row(store, key, info.size, started, destination=str(target))
        return target


class DownloadBytes(GcsTask, store_tasks.DownloadBytes):
    """The content of ``key`` as bytes (whole in memory: use download_file or download_stream
    for big objects)."""


class DownloadStream(GcsTask):
    """Stream ``key`` into ``sink`` (a writable binary file object, or a callable taking each
    chunk) in chunks of at most ``chunk_size``; a dropped connection resumes where it stopped,
    so the sink sees every byte exactly once. Returns the number of bytes written."""

    lineage = store_tasks.download_lineage

    def run(
        self,
        bucket: GcsBucket,
        key: str,
        sink: BinaryIO | Callable[[bytes], Any],
        *,
        chunk_size: int = CHUNK_SIZE,
    ) -> int:
        store = self.store(bucket)
        write = sink.write if hasattr(sink, "write") else sink
        started = time.perf_counter()
        total = 0
        reader = store.open(key)  # NotFound before the sink sees anything
        size = getattr(reader, "size", None)
        with Progress(f"download {store.url_for(key)}", total=size) as progress, reader:
            while chunk := reader.read(chunk_size):
                write(chunk)
                total += len(chunk)
                progress.advance(len(chunk))
        self.transfer_row(store, key, total, started)
        return total


class ListObjects(GcsTask, store_tasks.ListObjects):
    """Objects under ``prefix`` (relative to the block's prefix), one retried request per page,
    filtered by ``glob`` ('*' within a segment, '**' across); ``recursive=False`` lists one
    level, with sub-prefixes as entries ending in '/'. ``limit`` stops early."""


class DeleteObjects(GcsTask):
    """Delete ``keys``, ``concurrency`` requests at a time; absent keys count as deleted.
    Failures are reported per key; with ``raise_on_error`` (default) any failure raises
    DeliveryError naming the keys."""

    def run(
        self, bucket: GcsBucket, keys: Iterable[str], *, raise_on_error: bool = True
    ) -> DeleteResult:
        store = self.store(bucket)
        result = store.delete_many(keys)
        row = {"bucket": f"gs://{bucket.bucket}", "objects": len(result.deleted)}
        self.summarise(store, {**row, "failed": len(result.errors)})
        if result.errors and raise_on_error:
            shown = "; ".join(f"{k}: {v}" for k, v in list(result.errors.items())[:10])
            raise DeliveryError(
                f"GCS could not delete {len(result.errors)} of "
                f"{len(result.errors) + len(result.deleted)} key(s) in bucket "
                f"'{bucket.bucket}': {shown}",
                system="GCS",
                target=bucket.bucket,
            )
        return result


class CopyObject(GcsTask):
    """Server-side copy ``src`` -> ``dst`` (in ``dest_bucket`` if given) with ``rewrite``:
    large objects take several calls, each retried alone. No bytes pass through this process.
    ``if_generation_match=0`` makes it create-only."""

    lineage = store_tasks.copy_lineage

    def run(
        self,
        bucket: GcsBucket,
        src: str,
        dst: str,
        *,
        dest_bucket: GcsBucket | None = None,
        if_generation_match: int | None = None,
        if_metageneration_match: int | None = None,
    ) -> ObjectInfo:
        store = self.store(bucket)
        dest = self.store(dest_bucket) if dest_bucket is not None else store
        started = time.perf_counter()
        with Progress(f"copy {store.url_for(src)} to {dest.url_for(dst)}", None) as progress:
            store.on_bytes = progress.advance
            info = store.copy_to(
                src,
                dest,
                dst,
                if_generation_match=if_generation_match,
                if_metageneration_match=if_metageneration_match,
            )
        self.transfer_row(dest, dst, info.size, started, source=store.url_for(src))
        return info


class MoveObject(GcsTask):
    """Server-side copy, then delete of the source (only after the copy succeeded)."""

    lineage = store_tasks.copy_lineage

    def run(
        self, bucket: GcsBucket, src: str, dst: str, *, dest_bucket: GcsBucket | None = None
    ) -> ObjectInfo:
        store = self.store(bucket)
        dest = self.store(dest_bucket) if dest_bucket is not None else store
        started = time.perf_counter()
        with Progress(f"move {store.url_for(src)} to {dest.url_for(dst)}", None) as progress:
            store.on_bytes = progress.advance
            info = store.copy_to(src, dest, dst)
            store.delete(src)
        self.transfer_row(dest, dst, info.size, started, source=store.url_for(src))
        return info


class Sync(GcsTask):
    """Make ``prefix`` match ``local_dir`` (``direction="upload"``) or the reverse
    (``"download"``): by size, then mtime (``size_mtime``) or crc32c (``crc32c`` / ``etag``).
    ``delete`` removes extras at the destination; ``dry_run`` reports only; ``concurrency``
    files at a time. Keys that would leave ``local_dir`` are refused before any download."""

    lineage = store_tasks.sync_lineage

    def run(
        self,
        bucket: GcsBucket,
        local_dir: str | os.PathLike[str],
        prefix: str = "",
        *,
        direction: Literal["upload", "download"] = "upload",
        delete: bool = False,
        dry_run: bool = False,
        compare: Literal["size_mtime", "crc32c", "etag"] = "size_mtime",
        concurrency: int = 4,
    ) -> SyncResult:
        store = self.store(bucket)
        started = time.perf_counter()
        where = "gs://" + "/".join(p for p in (bucket.bucket, store.prefix, prefix.strip("/")) if p)
        with Progress(f"sync {direction} {where}", None) as progress:
            store.on_bytes = progress.advance
            result = store.sync(
                local_dir,
                prefix,
                direction=direction,
                delete=delete,
                dry_run=dry_run,
                compare=compare,
                concurrency=concurrency,
            )
        row = {
            "direction": direction,
            "local": str(local_dir),
            "prefix": prefix,
            "objects": len(result.transferred),
            "deleted": len(result.deleted),
            "skipped": len(result.skipped),
            "bytes": result.bytes,
            "dry_run": dry_run,
            "seconds": round(time.perf_counter() - started, 3),
        }
        self.summarise(store, row)
        return result


class PresignedUrl(GcsTask, store_tasks.PresignedUrl):
    """A v4 signed URL for ``method`` on ``key``, valid ``expires`` seconds."""


class Exists(GcsTask, store_tasks.Exists):
    """Whether ``key`` exists (one metadata request)."""


class Stat(GcsTask, store_tasks.Stat):
    """Size, etag and modification time of ``key``; NotFound if absent."""


class ObjectMetadata(GcsTask):
    """GCS's own metadata of ``key``: generation and metageneration (for preconditions),
    crc32c, md5, storage class, KMS key, component count."""

    def run(self, bucket: GcsBucket, key: str) -> dict[str, Any]:
        return self.store(bucket).metadata(key)


class ComposeObjects(GcsTask):
    """Concatenate ``sources`` server-side into ``dst_key`` (more than 32 are composed in
    rounds); ``if_generation_match=0`` makes it create-only."""

    lineage = compose_lineage

    def run(
        self,
        bucket: GcsBucket,
        sources: list[str],
        dst_key: str,
        *,
        if_generation_match: int | None = None,
        if_metageneration_match: int | None = None,
    ) -> ObjectInfo:
        store = self.store(bucket)
        started = time.perf_counter()
        with Progress(f"compose {store.url_for(dst_key)}", None) as progress:
            info = store.compose(
                sources,
                dst_key,
                if_generation_match=if_generation_match,
                if_metageneration_match=if_metageneration_match,
            )
            progress.advance(info.size)
        self.transfer_row(store, dst_key, info.size, started, sources=len(sources))
        return info


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
object_metadata = ObjectMetadata()
compose_objects = ComposeObjects()

TASKS: dict[str, GcsTask] = {
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
        object_metadata,
        compose_objects,
    )
}
