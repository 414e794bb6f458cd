"""Prebuilt Prefect tasks: RetryingTask subclasses and ready-made instances.

Names and signatures match flowport-s3 wherever the operation exists on both, with the
bucket block first: a flow written for S3 runs on GCS by swapping the block. No task retries
a whole transfer: the store retries each request, chunk or page on its own. Tasks run with
``cache_policy=NO_CACHE``: payloads and blocks are never hashed.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

from flowport.artifacts import summarise
from flowport.progress import Progress
from flowport.store import CHUNK_SIZE, DeleteResult, ObjectInfo
from flowport.task import RetryingTask
from flowport_gcs import errors
from flowport_gcs.blocks import GcsBucket
from flowport_gcs.store import GcsStore, SyncResult


class GcsTask(RetryingTask):
    """Base of this connector's tasks: supplies the transient predicate and the store."""

    tags = ("flowport", "gcs")

    def is_transient(self, exc: BaseException) -> bool:
        return errors.is_transient(exc)

    def store(self, bucket: GcsBucket) -> GcsStore:
        """A store retrying under this call's policy (captured here, safe to use in threads)."""
        return GcsStore(bucket, retrier=self.retrier)

    def _transfer_row(
        self, store: GcsStore, key: str, size: int, started: float, **extra: Any
    ) -> None:
        seconds = max(time.perf_counter() - started, 1e-9)
        row = {
            "object": store.url_for(key),
            "bytes": size,
            "seconds": round(seconds, 3),
            "MB/s": round(size / seconds / 1e6, 2),
            **extra,
        }
        summarise(self.name, [row])


class _Upload(GcsTask):
    def _upload(
        self,
        bucket: GcsBucket,
        key: str,
        size: int | None,
        put: Any,
    ) -> ObjectInfo:
        store = self.store(bucket)
        started = time.perf_counter()
        with Progress(f"upload {store.url_for(key)}", total=size) as progress:
            store.on_bytes = progress.advance
            info: ObjectInfo = put(store)
        stats = store.last_upload
        self._transfer_row(
            store,
            key,
            info.size,
            started,
            chunks=len(stats.chunk_starts) if stats else 0,
            resumed=stats.resumed if stats else 0,
        )
        return info


class UploadFile(_Upload):
    """Upload a local file, resumably in ``chunk_size`` chunks (or as parallel composed parts
    above the block's ``composite_threshold``). A failed chunk resumes where the session
    stopped. ``if_not_exists`` / ``if_generation_match=0`` make it create-only (Conflict if the
    object exists). No cache policy: the file is never hashed by Prefect."""

    def run(
        self,
        bucket: GcsBucket,
        path: str | os.PathLike[str],
        key: str,
        if_not_exists: bool = False,
        if_generation_match: int | None = None,
        if_metageneration_match: int | None = None,
        content_type: str | None = None,
    ) -> ObjectInfo:
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
    """Upload ``data`` to ``key``. No cache policy: ``data`` is never hashed by Prefect."""

    def run(
        self,
        bucket: GcsBucket,
        data: bytes,
        key: str,
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
    """Upload from a binary file object or an iterable of byte chunks, holding at most two
    chunks in memory. No cache policy: the stream is never hashed by Prefect."""

    def run(
        self,
        bucket: GcsBucket,
        source: BinaryIO | Iterable[bytes],
        key: str,
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
    """Download ``key`` to ``path`` atomically (no partial file on failure); a dropped
    connection resumes at the byte it reached, on the same object generation."""

    def run(self, bucket: GcsBucket, key: str, path: str | os.PathLike[str]) -> ObjectInfo:
        store = self.store(bucket)
        size = store.stat(key).size
        started = time.perf_counter()
        with Progress(f"download {store.url_for(key)}", total=size) as progress:
            store.on_bytes = progress.advance
            info = store.get_file(key, path)
        self._transfer_row(store, key, info.size, started, path=str(Path(path)))
        return info


class DownloadBytes(GcsTask):
    """The content of ``key`` as bytes (whole in memory: use download_file for big objects)."""

    def run(self, bucket: GcsBucket, key: str) -> bytes:
        return self.store(bucket).get_bytes(key)


class DownloadStream(GcsTask):
    """The content of ``key`` as an iterator of chunks of at most ``chunk_size`` bytes; reads
    that drop reopen where they stopped."""

    def run(self, bucket: GcsBucket, key: str, chunk_size: int = CHUNK_SIZE) -> Iterator[bytes]:
        return self.store(bucket).get_stream(key, chunk_size=chunk_size)


class ListObjects(GcsTask):
    """Objects under ``prefix`` (relative to the block's prefix), filtered by ``glob``
    ('*' within a segment, '**' across); with ``recursive=False`` common prefixes too."""

    def run(
        self,
        bucket: GcsBucket,
        prefix: str = "",
        glob: str | None = None,
        recursive: bool = True,
    ) -> list[ObjectInfo]:
        return list(self.store(bucket).list(prefix, glob=glob, recursive=recursive))


class DeleteObjects(GcsTask):
    """Delete ``keys`` in parallel; absent keys count as deleted, failures are reported per
    key in the result (and in a table artifact), never raised for the batch."""

    def run(self, bucket: GcsBucket, keys: Iterable[str]) -> DeleteResult:
        store = self.store(bucket)
        result = store.delete_many(list(keys))
        summarise(
            self.name,
            [{"deleted": len(result.deleted), "failed": len(result.errors)}]
            + [{"key": k, "error": e} for k, e in result.errors.items()],
        )
        return result


class CopyObject(GcsTask):
    """Server-side copy with ``rewrite`` (large objects take several resumable calls)."""

    def run(
        self,
        bucket: GcsBucket,
        src_key: str,
        dst_key: str,
        if_generation_match: int | None = None,
        if_metageneration_match: int | None = None,
    ) -> ObjectInfo:
        return self.store(bucket).copy(
            src_key,
            dst_key,
            if_generation_match=if_generation_match,
            if_metageneration_match=if_metageneration_match,
        )


class MoveObject(GcsTask):
    """Server-side copy, then delete of the source."""

    def run(self, bucket: GcsBucket, src_key: str, dst_key: str) -> ObjectInfo:
        return self.store(bucket).move(src_key, dst_key)


class Sync(GcsTask):
    """Make ``prefix`` match ``local_dir`` (``direction="upload"``) or the reverse
    (``"download"``); equal size and crc32c means unchanged. ``delete`` removes extras at the
    destination; ``dry_run`` reports only. Keys that would leave ``local_dir`` are refused."""

    def run(
        self,
        bucket: GcsBucket,
        local_dir: str | os.PathLike[str],
        prefix: str = "",
        direction: str = "upload",
        delete: bool = False,
        dry_run: bool = False,
    ) -> SyncResult:
        store = self.store(bucket)
        result = store.sync(local_dir, prefix, direction=direction, delete=delete, dry_run=dry_run)
        summarise(
            self.name,
            [
                {
                    "direction": direction,
                    "dry run": dry_run,
                    "transferred": len(result.transferred),
                    "skipped": len(result.skipped),
                    "deleted": len(result.deleted),
                    "bytes": result.bytes,
                }
            ],
        )
        return result


class PresignedUrl(GcsTask):
    """A v4 signed URL for ``method`` on ``key``, valid ``expires`` seconds."""

    def run(self, bucket: GcsBucket, key: str, method: str = "GET", expires: int = 3600) -> str:
        return self.store(bucket).presign(key, method=method, expires=expires)


class Exists(GcsTask):
    """Whether ``key`` exists (one metadata request)."""

    def run(self, bucket: GcsBucket, key: str) -> bool:
        return self.store(bucket).exists(key)


class Stat(GcsTask):
    """Size, etag and modification time of ``key``; NotFound if absent."""

    def run(self, bucket: GcsBucket, key: str) -> ObjectInfo:
        return self.store(bucket).stat(key)


class ObjectMetadata(GcsTask):
    """GCS's own metadata of ``key``: generation and metageneration (for preconditions),
    crc32c, md5, storage class, KMS key, component count."""

    def run(self, bucket: GcsBucket, key: str) -> dict[str, Any]:
        return self.store(bucket).metadata(key)


class ComposeObjects(GcsTask):
    """Concatenate ``sources`` server-side into ``dst_key`` (more than 32 are composed in
    rounds); ``if_generation_match=0`` makes it create-only."""

    def run(
        self,
        bucket: GcsBucket,
        sources: list[str],
        dst_key: str,
        if_generation_match: int | None = None,
        if_metageneration_match: int | None = None,
    ) -> ObjectInfo:
        return self.store(bucket).compose(
            sources,
            dst_key,
            if_generation_match=if_generation_match,
            if_metageneration_match=if_metageneration_match,
        )


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
