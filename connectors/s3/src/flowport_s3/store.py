"""``S3Store``: the core ObjectStore over boto3, streaming in bounded memory.

Plain Python, no Prefect. Every S3 request is one idempotent unit retried by flowport's
retrier (botocore's own retries are off, see :mod:`flowport_s3.blocks`):

* uploads: one PutObject, or multipart with each ``UploadPart`` retried on its own; files are
  read part by part by the worker sending them (``concurrency`` in flight); streams buffer
  at most ``stream_concurrency`` parts, so memory stays near
  ``(stream_concurrency + 2) * part_size`` whatever the object size; a permanent failure
  aborts the multipart upload;
* downloads: ranged GETs; a stream that breaks resumes from the byte it reached (``If-Match``
  the ETag, so a replaced object is never stitched together); files download ranges in
  parallel into a temporary file, renamed into place only when complete;
* copies: server-side CopyObject, or UploadPartCopy ranges above ``multipart_copy_threshold``;
* listing: one ListObjectsV2 page per unit, fetched as the iterator is consumed;
* deletes: DeleteObjects in batches of 1,000 keys, failures reported per key.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import math
import os
import re
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any, BinaryIO, Literal, TypeVar

from flowport.errors import FlowportError, InvalidInput, NotFound
from flowport.parallel import bounded_map
from flowport.retry import Retrier, RetryPolicy
from flowport.store import CHUNK_SIZE, BaseStore, DeleteResult, ObjectInfo, Source
from flowport.sync import SyncResult, differs, sync_directory
from flowport_s3 import errors
from flowport_s3.blocks import GiB, MiB, S3Bucket

T = TypeVar("T")
R = TypeVar("R")
ProgressFn = Callable[[int], Any]

_log = logging.getLogger("flowport.s3")
_THREADS = "flowport-s3"  # thread name prefix of parallel units

#: The in-task retry policy of S3 units: patient enough to ride out a throttling burst or a
#: restarting endpoint (waits grow 0.5 s, 1 s, 2 s, ... capped at 20 s, with full jitter).
S3_RETRY_POLICY = RetryPolicy(attempts=8, initial_delay=0.5, max_delay=20.0, deadline=600.0)

_CHECKSUM_FIELDS = (
    "ChecksumCRC32",
    "ChecksumCRC32C",
    "ChecksumSHA1",
    "ChecksumSHA256",
    "ChecksumCRC64NVME",
)


def _snake(operation: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", operation).lower()


def _etag(value: str | None) -> str | None:
    return value.strip('"') if value else value


def read_exactly(reader: Any, size: int) -> bytes:
    """Up to ``size`` bytes from a file object; fewer only at its end (raw reads may be short)."""
    data = reader.read(size)
    if not data or len(data) >= size:
        return bytes(data or b"")
    parts = [data]
    got = len(data)
    while got < size:
        more = reader.read(size - got)
        if not more:
            break
        parts.append(more)
        got += len(more)
    return b"".join(parts)


def rechunk(chunks: Iterable[bytes], size: int) -> Iterator[bytes]:
    """Chunks of any size as parts of exactly ``size`` bytes (the last one may be shorter)."""
    buf = bytearray()
    for chunk in chunks:
        if not buf and len(chunk) == size:
            yield bytes(chunk)
            continue
        buf += chunk
        while len(buf) >= size:
            yield bytes(memoryview(buf)[:size])
            del buf[:size]
    if buf:
        yield bytes(buf)


def parts_of(source: Source, size: int) -> Iterator[bytes]:
    """The parts of an upload source: file objects are read a part at a time, never whole."""
    if isinstance(source, bytes | bytearray | memoryview):
        data = memoryview(source)
        for start in range(0, len(data), size):
            yield bytes(data[start : start + size])
    elif hasattr(source, "read"):
        while part := read_exactly(source, size):
            yield part
    else:
        yield from rechunk((bytes(c) for c in source if c), size)


class S3Store(BaseStore):
    """An S3 bucket (and key prefix) as a flowport :class:`~flowport.store.ObjectStore`.

    ``S3Store(bucket_block, retrier=task.retrier)``; tunables below are class attributes,
    overridable per instance through keyword arguments.
    """

    system = "S3"
    supports_conditional_put = True

    #: Objects larger than this are copied part by part with UploadPartCopy (S3 refuses a
    #: single CopyObject above 5 GiB).
    multipart_copy_threshold: int = 5 * GiB
    #: Largest part S3 accepts, and the most parts of one upload.
    max_part_size: int = 5 * GiB
    max_parts: int = 10_000
    #: Keys per DeleteObjects request (S3's maximum is 1,000).
    delete_batch_size: int = 1000
    #: Keys per ListObjectsV2 page (S3's maximum is 1,000).
    page_size: int = 1000
    #: Bytes per read while a ranged GET is written to a file.
    read_chunk: int = 1 * MiB
    #: Default retry policy when no retrier is given (tasks pass their own).
    retry_policy: RetryPolicy = S3_RETRY_POLICY

    def __init__(
        self,
        bucket: S3Bucket,
        prefix: str | None = None,
        *,
        retrier: Retrier | None = None,
        part_size: int | None = None,
        concurrency: int | None = None,
        stream_concurrency: int | None = None,
        **tunables: Any,
    ):
        super().__init__(bucket.prefix if prefix is None else prefix)
        self.bucket = bucket
        self.name = bucket.bucket_name
        self.part_size = part_size or bucket.part_size
        self.concurrency = concurrency or bucket.concurrency
        self.stream_concurrency = stream_concurrency or bucket.stream_concurrency
        self.retrier = retrier or self.retry_policy.bind(errors.is_transient, "s3")
        for attr, value in tunables.items():
            if not hasattr(type(self), attr) or attr.startswith("_"):
                raise TypeError(f"S3Store has no tunable {attr!r}")
            setattr(self, attr, value)

    def __repr__(self) -> str:
        endpoint = self.bucket.endpoint
        return f"S3Store(bucket={self.name!r}, prefix={self.prefix!r}, endpoint={endpoint!r})"

    def with_options(self, **options: Any) -> S3Store:
        """A copy sharing the block, with other tunables (part_size, concurrency, retrier, ...)."""
        kwargs: dict[str, Any] = {
            "retrier": self.retrier,
            "part_size": self.part_size,
            "concurrency": self.concurrency,
            "stream_concurrency": self.stream_concurrency,
            "multipart_copy_threshold": self.multipart_copy_threshold,
            "delete_batch_size": self.delete_batch_size,
            "page_size": self.page_size,
            "read_chunk": self.read_chunk,
        }
        kwargs.update(options)
        prefix = kwargs.pop("prefix", self.prefix)
        return S3Store(self.bucket, prefix, **kwargs)

    # -- plumbing ----------------------------------------------------------------------

    def __getstate__(self) -> dict[str, Any]:
        # A boto3 client holds locks and sockets: a pickled store (Dask, process pools)
        # builds its own in the receiving process.
        state = dict(self.__dict__)
        state.pop("_s3_client", None)
        return state

    @property
    def client(self) -> Any:
        client = self.__dict__.get("_s3_client")
        if client is None:
            client = self.__dict__["_s3_client"] = self.bucket.client()
        return client

    @property
    def root_url(self) -> str:
        """``s3://bucket`` or ``s3://bucket/prefix``: what artifacts are keyed by."""
        return self._target(self.prefix or None)

    def url_for(self, key: str) -> str:
        return self._target(self._full(key))

    def _target(self, full_key: str | None = None) -> str:
        return f"s3://{self.name}/{full_key}" if full_key else f"s3://{self.name}"

    def _raw(self, operation: str, full_key: str | None, **params: Any) -> Any:
        """One request, errors translated (transient ones as TransientError), not retried."""
        method = getattr(self.client, _snake(operation))
        try:
            return method(Bucket=self.name, **params)
        except Exception as exc:
            raise errors.translate(
                exc,
                operation=operation,
                target=self._target(full_key),
                endpoint=self.bucket.endpoint,
            ) from exc

    def _call(self, operation: str, full_key: str | None, **params: Any) -> Any:
        """One request as one retried idempotent unit."""
        return self.retrier(self._raw, operation, full_key, **params)

    @property
    def checksum_algorithm(self) -> str | None:
        """The bucket's algorithm; else CRC32 (as boto3's transfer manager declares it), unless
        the client computes checksums only when required (S3-compatible stores without them)."""
        if self.bucket.checksum_algorithm:
            return self.bucket.checksum_algorithm
        mode = getattr(self.client.meta.config, "request_checksum_calculation", None)
        return None if mode == "when_required" else "CRC32"

    def _put_args(self) -> dict[str, Any]:
        args = self.bucket.put_args()
        if self.checksum_algorithm:
            args["ChecksumAlgorithm"] = self.checksum_algorithm
        return args

    def _object_info(self, full_key: str, head: dict[str, Any]) -> ObjectInfo:
        return ObjectInfo(
            full_key,
            int(head.get("ContentLength", head.get("Size", 0))),
            _etag(head.get("ETag")),
            head.get("LastModified"),
        )

    def check(self) -> str:
        """HeadBucket: the bucket exists and the credentials may use it."""
        self._call("HeadBucket", None)
        return f"S3 bucket '{self.name}' is reachable at {self.bucket.endpoint}"

    # -- uploads -----------------------------------------------------------------------

    def put_stream(
        self,
        source: Source,
        key: str,
        *,
        if_not_exists: bool = False,
        progress: ProgressFn | None = None,
    ) -> ObjectInfo:
        """Upload from bytes, a binary file object or an iterable of chunks, a part at a time."""
        full = self._full(key)
        return self._info(
            self._put_parts(full, parts_of(source, self.part_size), if_not_exists, progress)
        )

    def put_bytes(
        self,
        data: bytes,
        key: str,
        *,
        if_not_exists: bool = False,
        progress: ProgressFn | None = None,
    ) -> ObjectInfo:
        return self.put_stream(data, key, if_not_exists=if_not_exists, progress=progress)

    def put_file(
        self,
        path: str | os.PathLike[str],
        key: str,
        *,
        if_not_exists: bool = False,
        progress: ProgressFn | None = None,
    ) -> ObjectInfo:
        """Upload a file; multipart parts are read (``pread``) by the worker that sends them,
        so reading runs in parallel and only the parts in flight are in memory."""
        full = self._full(key)  # validate before touching the file
        with open(path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            step = self._part_size_for(size)
            if size <= step:
                return self._info(
                    self._put_single(full, read_exactly(fh, size + 1), if_not_exists, progress)
                )
            fd = fh.fileno()

            def reader(offset: int) -> Callable[[], bytes]:
                return lambda: os.pread(fd, min(step, size - offset), offset)

            parts = (reader(offset) for offset in range(0, size, step))
            return self._info(
                self._put_multipart(full, parts, if_not_exists, progress, self.concurrency)
            )

    def _part_size_for(self, size: int) -> int:
        """The bucket's part size, raised when ``size`` would otherwise need > 10,000 parts."""
        return max(self.part_size, math.ceil(size / self.max_parts))

    def _put_chunks(self, key: str, chunks: Iterator[bytes], if_not_exists: bool) -> ObjectInfo:
        return self._put_parts(key, rechunk(chunks, self.part_size), if_not_exists, None)

    def _put_parts(
        self, key: str, parts: Iterator[bytes], if_not_exists: bool, progress: ProgressFn | None
    ) -> ObjectInfo:
        first = next(parts, b"")
        second = next(parts, None)
        if second is None:
            return self._put_single(key, first, if_not_exists, progress)

        def all_parts() -> Iterator[bytes]:
            nonlocal first, second
            yield first
            first = None  # type: ignore[assignment]
            yield second  # type: ignore[misc]
            second = None
            yield from parts

        return self._put_multipart(
            key,
            all_parts(),
            if_not_exists,
            progress,
            min(self.concurrency, self.stream_concurrency),
        )

    def _put_single(
        self, key: str, data: bytes, if_not_exists: bool, progress: ProgressFn | None
    ) -> ObjectInfo:
        params: dict[str, Any] = {"Key": key, "Body": data, **self._put_args()}
        if if_not_exists:
            params["IfNoneMatch"] = "*"
        resp = self._call("PutObject", key, **params)
        if progress:
            progress(len(data))
        return ObjectInfo(key, len(data), _etag(resp.get("ETag")))

    def _put_multipart(
        self,
        key: str,
        parts: Iterator[bytes | Callable[[], bytes]],
        if_not_exists: bool,
        progress: ProgressFn | None,
        concurrency: int,
    ) -> ObjectInfo:
        """Parts are bytes, or callables reading them inside the worker (files)."""
        upload_id = self._call("CreateMultipartUpload", key, Key=key, **self._put_args())[
            "UploadId"
        ]
        total = 0
        lock = threading.Lock()

        def upload(numbered: tuple[int, bytes | Callable[[], bytes]]) -> dict[str, Any]:
            nonlocal total
            number, part = numbered
            body = part() if callable(part) else part
            done = self._upload_part(key, upload_id, number, body)
            with lock:
                total += len(body)
            if progress:
                progress(len(body))
            return done

        try:
            done = bounded_map(enumerate(parts, 1), upload, concurrency, _THREADS)
            resp = self._complete(key, upload_id, done, if_not_exists)
        except BaseException as exc:
            self._abort(key, upload_id, exc)
            raise
        return ObjectInfo(key, total, _etag(resp.get("ETag")))

    def _upload_part(self, key: str, upload_id: str, number: int, body: bytes) -> dict[str, Any]:
        """One part: the idempotent unit of a multipart upload (same number, same bytes)."""
        params: dict[str, Any] = {
            "Key": key,
            "UploadId": upload_id,
            "PartNumber": number,
            "Body": body,
        }
        if self.checksum_algorithm:
            params["ChecksumAlgorithm"] = self.checksum_algorithm
        resp = self._call("UploadPart", key, **params)
        return self._part(number, resp)

    def _part(self, number: int, resp: dict[str, Any]) -> dict[str, Any]:
        """The Complete entry of a part; its checksum only when the upload declared one
        (an upload created without ChecksumAlgorithm must not list botocore's default CRCs)."""
        part = {"PartNumber": number, "ETag": resp["ETag"]}
        if self.checksum_algorithm:
            part.update({f: resp[f] for f in _CHECKSUM_FIELDS if resp.get(f)})
        return part

    def _complete(
        self, key: str, upload_id: str, parts: list[dict[str, Any]], if_not_exists: bool
    ) -> dict[str, Any]:
        params: dict[str, Any] = {
            "Key": key,
            "UploadId": upload_id,
            "MultipartUpload": {"Parts": parts},
        }
        if if_not_exists:
            params["IfNoneMatch"] = "*"
        attempts = 0

        def unit() -> dict[str, Any]:
            nonlocal attempts
            attempts += 1
            try:
                return self._raw("CompleteMultipartUpload", key, **params)  # type: ignore[no-any-return]
            except NotFound:
                # A retried Complete whose first try succeeded (the answer was lost) finds
                # the upload gone: the object with as many parts is the proof of success.
                if attempts > 1:
                    with contextlib.suppress(FlowportError):
                        head = self._raw("HeadObject", key, Key=key)
                        if str(head.get("ETag", "")).strip('"').endswith(f"-{len(parts)}"):
                            return {"ETag": head["ETag"]}
                raise

        return self.retrier(unit)

    def _abort(self, key: str, upload_id: str, cause: BaseException) -> None:
        try:
            self.retrier(self._raw, "AbortMultipartUpload", key, Key=key, UploadId=upload_id)
        except Exception as exc:  # the original failure matters more; say what is left over
            _log.warning(
                "S3 multipart upload %s of %s could not be aborted (%s) after %s; "
                "a lifecycle rule for incomplete uploads will clean it up",
                upload_id,
                self._target(key),
                exc,
                type(cause).__name__,
            )

    # -- downloads ---------------------------------------------------------------------

    def _open(self, key: str) -> BinaryIO:
        return _Reader(self, key)  # type: ignore[return-value]

    def get_file(
        self,
        key: str,
        path: str | os.PathLike[str],
        *,
        progress: ProgressFn | None = None,
        info: ObjectInfo | None = None,
    ) -> ObjectInfo:
        """Download to ``path`` with parallel ranged GETs; a failed download leaves no file.

        ``info``: what ``stat(key)`` returned, when the caller has it (saves a HeadObject).
        """
        full = self._full(key)
        # NotFound before anything is created
        info = self._stat(full) if info is None else replace(info, key=full)
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
        try:
            if info.size <= self.part_size:
                with _Reader(self, full, etag=info.etag) as reader:
                    while chunk := reader.read(self.read_chunk):
                        os.write(fd, chunk)
                        if progress:
                            progress(len(chunk))
            else:
                os.ftruncate(fd, info.size)
                step = self._part_size_for(info.size)
                ranges = ((s, min(s + step, info.size) - 1) for s in range(0, info.size, step))
                bounded_map(
                    ranges,
                    lambda r: self._fetch_range(full, info.etag, r, fd, progress),
                    self.concurrency,
                    _THREADS,
                )
            os.close(fd)
            fd = -1
            os.replace(tmp, target)
        except BaseException:
            if fd >= 0:
                os.close(fd)
            Path(tmp).unlink(missing_ok=True)
            raise
        return self._info(info)

    def _fetch_range(
        self,
        key: str,
        etag: str | None,
        span: tuple[int, int],
        fd: int,
        progress: ProgressFn | None,
    ) -> int:
        """One byte range written at its offset: the idempotent unit of a parallel download."""
        start, end = span

        def unit() -> int:
            params: dict[str, Any] = {"Key": key, "Range": f"bytes={start}-{end}"}
            if etag:
                params["IfMatch"] = f'"{etag}"'
            body = self._raw("GetObject", key, **params)["Body"]
            offset = start
            try:
                while chunk := body.read(self.read_chunk):
                    os.pwrite(fd, chunk, offset)
                    offset += len(chunk)
            except Exception as exc:
                raise errors.translate(
                    exc,
                    operation="GetObject",
                    target=self._target(key),
                    endpoint=self.bucket.endpoint,
                ) from exc
            finally:
                body.close()
            if offset != end + 1:
                raise errors.translate(
                    ConnectionError(f"range {start}-{end} ended at byte {offset}"),
                    operation="GetObject",
                    target=self._target(key),
                    endpoint=self.bucket.endpoint,
                )
            return offset - start

        n = self.retrier(unit)
        if progress:
            progress(n)
        return n

    def get_stream(
        self, key: str, *, chunk_size: int = CHUNK_SIZE, progress: ProgressFn | None = None
    ) -> Iterator[bytes]:
        """The object in chunks of at most ``chunk_size``; a broken connection resumes in place."""
        reader = self.open(key)

        def chunks() -> Iterator[bytes]:
            with reader:
                while chunk := reader.read(chunk_size):
                    if progress:
                        progress(len(chunk))
                    yield chunk

        return chunks()

    # -- metadata, listing -------------------------------------------------------------

    def _stat(self, key: str) -> ObjectInfo:
        return self._object_info(key, self._call("HeadObject", key, Key=key))

    def _list(self, prefix: str, recursive: bool) -> Iterator[ObjectInfo]:
        params: dict[str, Any] = {"Prefix": prefix, "MaxKeys": self.page_size}
        if not recursive:
            params["Delimiter"] = "/"
        while True:
            page = self._call("ListObjectsV2", prefix or None, **params)
            items = [
                ObjectInfo(
                    o["Key"], int(o.get("Size", 0)), _etag(o.get("ETag")), o.get("LastModified")
                )
                for o in page.get("Contents") or ()
            ]
            items += [
                ObjectInfo(p["Prefix"], 0, is_prefix=True) for p in page.get("CommonPrefixes") or ()
            ]
            items.sort(key=lambda i: i.key)  # objects and prefixes interleave in key order
            yield from items
            token = page.get("NextContinuationToken")
            if not page.get("IsTruncated") or not token:
                return
            params["ContinuationToken"] = token

    # -- delete, copy, move ------------------------------------------------------------

    def _delete(self, key: str) -> None:
        self._call("DeleteObject", key, Key=key)

    def delete_many(self, keys: Iterable[str]) -> DeleteResult:
        """DeleteObjects, ``delete_batch_size`` keys per request; failures reported per key.

        Invalid keys are reported as failures, not sent. Each batch is one retried unit
        (deleting again what is gone is not an error on S3).
        """
        result = DeleteResult()
        batch: dict[str, str] = {}  # full key -> the caller's key

        def flush() -> None:
            if not batch:
                return
            objects = [{"Key": k} for k in batch]
            resp = self._call("DeleteObjects", None, Delete={"Objects": objects, "Quiet": False})
            failed = {e.get("Key", ""): e for e in resp.get("Errors") or ()}
            for full, given in batch.items():
                if full in failed:
                    err = failed[full]
                    result.errors[given] = f"{err.get('Code', 'Error')}: {err.get('Message', '')}"
                else:
                    result.deleted.append(given)
            batch.clear()

        for key in keys:
            try:
                batch[self._full(key)] = key
            except InvalidInput as exc:
                result.errors[key] = f"InvalidInput: {exc}"
                continue
            if len(batch) >= self.delete_batch_size:
                flush()
        flush()
        return result

    def _copy(self, src: str, dst: str) -> ObjectInfo:
        return self._copy_into(src, self, dst)

    def copy_to(
        self, src: str, dest: S3Store, dst: str, *, progress: ProgressFn | None = None
    ) -> ObjectInfo:
        """Server-side copy into another bucket (reached with the destination's credentials)."""
        return dest._info(self._copy_into(self._full(src), dest, dest._full(dst), progress))

    def copy(self, src: str, dst: str, *, progress: ProgressFn | None = None) -> ObjectInfo:
        return self._info(self._copy_into(self._full(src), self, self._full(dst), progress))

    def move(self, src: str, dst: str, *, progress: ProgressFn | None = None) -> ObjectInfo:
        info = self.copy(src, dst, progress=progress)
        self.delete(src)
        return info

    def _copy_into(
        self, src: str, dest: S3Store, dst: str, progress: ProgressFn | None = None
    ) -> ObjectInfo:
        head = self._call("HeadObject", src, Key=src)
        size = int(head["ContentLength"])
        source = {"Bucket": self.name, "Key": src}
        if size <= self.multipart_copy_threshold:
            resp = dest._call("CopyObject", dst, Key=dst, CopySource=source, **dest._put_args())
            if progress:
                progress(size)
            result = resp.get("CopyObjectResult") or {}
            return ObjectInfo(dst, size, _etag(result.get("ETag")), result.get("LastModified"))
        return dest._multipart_copy(source, head, dst, progress)

    def _multipart_copy(
        self,
        source: dict[str, str],
        head: dict[str, Any],
        dst: str,
        progress: ProgressFn | None,
    ) -> ObjectInfo:
        size = int(head["ContentLength"])
        step = max(self._part_size_for(size), math.ceil(size / self.max_parts))
        args = self._put_args()
        # Server-side copies move no bytes over the wire, and stores answer UploadPartCopy
        # without a part checksum: declare none, or Complete would refuse the part list.
        args.pop("ChecksumAlgorithm", None)
        for name in (
            "ContentType",
            "ContentEncoding",
            "ContentDisposition",
            "CacheControl",
            "ContentLanguage",
            "Metadata",
        ):
            if head.get(name) and name not in args:
                args[name] = head[name]
        upload_id = self._call("CreateMultipartUpload", dst, Key=dst, **args)["UploadId"]
        etag = head.get("ETag")

        def copy_part(numbered: tuple[int, int]) -> dict[str, Any]:
            number, start = numbered
            end = min(start + step, size) - 1
            params: dict[str, Any] = {
                "Key": dst,
                "UploadId": upload_id,
                "PartNumber": number,
                "CopySource": source,
                "CopySourceRange": f"bytes={start}-{end}",
            }
            if etag:
                params["CopySourceIfMatch"] = etag
            resp = self._call("UploadPartCopy", dst, **params)["CopyPartResult"]
            if progress:
                progress(end - start + 1)
            return {"PartNumber": number, "ETag": resp["ETag"]}

        try:
            parts = bounded_map(
                enumerate(range(0, size, step), 1), copy_part, self.concurrency, _THREADS
            )
            resp = self._complete(dst, upload_id, parts, False)
        except BaseException as exc:
            self._abort(dst, upload_id, exc)
            raise
        return ObjectInfo(dst, size, _etag(resp.get("ETag")))

    # -- presigned URLs ----------------------------------------------------------------

    def presign(self, key: str, *, method: str = "GET", expires: int = 3600) -> str:
        """A SigV4 presigned GET or PUT URL valid for ``expires`` seconds (at most 7 days)."""
        full = self._full(key)
        operation = {"GET": "get_object", "PUT": "put_object"}.get(method.upper())
        if operation is None:
            raise InvalidInput(
                f"S3 presigned URLs are for GET or PUT, not {method!r}",
                system=self.system,
                target=key,
            )
        if not 1 <= int(expires) <= 7 * 24 * 3600:
            raise InvalidInput(
                f"S3 presigned URL expiry must be 1 s to 7 days, not {expires}",
                system=self.system,
                target=key,
            )
        try:
            return str(
                self.client.generate_presigned_url(
                    operation,
                    Params={"Bucket": self.name, "Key": full},
                    ExpiresIn=int(expires),
                    HttpMethod=method.upper(),
                )
            )
        except Exception as exc:
            raise errors.translate(
                exc, operation="presign", target=self._target(full), endpoint=self.bucket.endpoint
            ) from exc

    # -- sync --------------------------------------------------------------------------

    def sync(
        self,
        local_dir: str | os.PathLike[str],
        prefix: str = "",
        *,
        direction: Literal["upload", "download"] = "upload",
        delete: bool = False,
        dry_run: bool = False,
        compare: Literal["size_mtime", "etag"] = "size_mtime",
        concurrency: int = 4,
        progress: ProgressFn | None = None,
    ) -> SyncResult:
        """Make ``prefix`` match ``local_dir`` (upload) or ``local_dir`` match ``prefix``
        (download). A file is transferred when missing or when its size differs, and then when
        the source is newer (``size_mtime``) or the content hash differs from the ETag
        (``etag``). ``delete`` removes extraneous files on the destination side. Downloads
        refuse every key that would land outside ``local_dir`` before writing anything."""
        if direction not in ("upload", "download"):
            raise InvalidInput(
                f"sync direction must be 'upload' or 'download', not {direction!r}",
                system=self.system,
            )
        if compare not in ("size_mtime", "etag"):
            raise InvalidInput(
                f"sync compare must be 'size_mtime' or 'etag', not {compare!r}", system=self.system
            )
        parts_each = max(1, self.concurrency // max(1, concurrency))
        worker = self.with_options(concurrency=parts_each)

        def etag_differs(path: Path, info: ObjectInfo) -> bool:
            return info.etag is None or local_etag(path, info.etag, self.part_size) != info.etag

        content = etag_differs if compare == "etag" else None
        return sync_directory(
            self,
            local_dir,
            prefix,
            direction=direction,
            delete=delete,
            dry_run=dry_run,
            concurrency=concurrency,
            differs=lambda path, info, upload: differs(path, info, upload, content),
            put=lambda path, key: worker.put_file(path, key, progress=progress),
            get=lambda key, path: worker.get_file(key, path, progress=progress),
            thread_name=_THREADS,
        )


def local_etag(path: Path, remote_etag: str, part_size: int) -> str:
    """The ETag S3 would give ``path``: its MD5, or for a multipart ETag (``...-N``) the MD5 of
    the parts' MD5s, assuming the parts were ``part_size`` bytes (flowport's own uploads)."""
    multipart = "-" in remote_etag
    digests: list[bytes] = []
    whole = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as fh:
        while block := read_exactly(fh, part_size):
            if multipart:
                digests.append(hashlib.md5(block, usedforsecurity=False).digest())
            else:
                whole.update(block)
    if not multipart:
        return whole.hexdigest()
    combined = hashlib.md5(b"".join(digests), usedforsecurity=False).hexdigest()
    return f"{combined}-{len(digests)}"


class _Reader(io.RawIOBase):
    """A streaming GetObject that resumes with ``Range: bytes=<pos>-`` (and ``If-Match``) after
    a transient failure: reading the next block is the retried unit.

    It is seekable: after a seek it reads with bounded ranged GETs (``bytes=<pos>-<end>``,
    at least ``min_range`` bytes each), so a Parquet reader fetches only the footer and the
    column chunks it needs, never the whole object. Every GET is pinned to the ETag the
    first one saw, so a replaced object is never mixed into one read.
    """

    #: Smallest ranged GET after a seek (small reads are served from what it brought).
    min_range = 64 * 1024

    def __init__(self, store: S3Store, key: str, *, etag: str | None = None):
        super().__init__()
        self.store = store
        self.key = key
        self.etag = etag
        self.pos = 0
        self.size: int | None = None
        self.body: Any = None
        #: True once the reader has been seeked: reads are bounded ranged GETs from then on.
        self.random_access = False
        self._buffer = b""  # bytes of a ranged GET beyond what the last read asked for
        self._buffer_at = 0
        store.retrier(self._get)  # eager: a missing key fails here, at open()

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if self.closed:
            raise ValueError("I/O operation on closed S3 reader")
        if whence == io.SEEK_SET:
            target = offset
        elif whence == io.SEEK_CUR:
            target = self.pos + offset
        elif whence == io.SEEK_END:
            target = self._size() + offset
        else:
            raise ValueError(f"invalid whence {whence!r}")
        if target < 0:
            raise OSError(f"negative seek position {target}")
        if target != self.pos:
            self._drop()  # the open stream is somewhere else: ranged GETs from here on
            self.random_access = True
            self.pos = target
        return self.pos

    def _size(self) -> int:
        if self.size is None:  # pragma: no cover - the eager GET always sets it
            self.size = int(self.store._stat(self.key).size)
        return self.size

    def _get(self) -> None:
        params: dict[str, Any] = {"Key": self.key}
        if self.pos:
            params["Range"] = f"bytes={self.pos}-"
        if self.etag:
            params["IfMatch"] = f'"{self.etag}"'
        resp = self.store._raw("GetObject", self.key, **params)
        self.etag = self.etag or _etag(resp.get("ETag"))
        self.size = self.pos + int(resp.get("ContentLength", 0))
        self.body = resp["Body"]

    def _get_range(self, size: int) -> bytes:
        """One bounded ranged GET from ``pos``: the retried unit of a random-access read."""
        start = self.pos
        end = min(start + max(size, self.min_range), self._size()) - 1
        params: dict[str, Any] = {"Key": self.key, "Range": f"bytes={start}-{end}"}
        if self.etag:
            params["IfMatch"] = f'"{self.etag}"'
        resp = self.store._raw("GetObject", self.key, **params)
        body = resp["Body"]
        try:
            data: bytes = body.read()
        except Exception as exc:
            raise errors.translate(
                exc,
                operation="GetObject",
                target=self.store._target(self.key),
                endpoint=self.store.bucket.endpoint,
            ) from exc
        finally:
            body.close()
        if len(data) != end - start + 1:
            raise errors.translate(
                ConnectionError(f"range {start}-{end} ended after {len(data)} bytes"),
                operation="GetObject",
                target=self.store._target(self.key),
                endpoint=self.store.bucket.endpoint,
            )
        return data

    def _drop(self) -> None:
        body, self.body = self.body, None
        if body is not None:
            with contextlib.suppress(Exception):
                body.close()

    def _read_block(self, size: int) -> bytes:
        if self.body is None:
            self._get()
        try:
            data: bytes = self.body.read(size)
        except Exception as exc:
            self._drop()
            raise errors.translate(
                exc,
                operation="GetObject",
                target=self.store._target(self.key),
                endpoint=self.store.bucket.endpoint,
            ) from exc
        if not data and self.size is not None and self.pos < self.size:
            self._drop()
            raise errors.translate(
                ConnectionError(f"stream ended at byte {self.pos} of {self.size}"),
                operation="GetObject",
                target=self.store._target(self.key),
                endpoint=self.store.bucket.endpoint,
            )
        return data

    def _read_random(self, size: int) -> bytes:
        """``size`` bytes at ``pos`` from the last ranged GET's bytes, or a new ranged GET."""
        offset = self.pos - self._buffer_at
        if not (0 <= offset < len(self._buffer)):
            self._buffer = self.store.retrier(self._get_range, size)
            self._buffer_at, offset = self.pos, 0
        data = self._buffer[offset : offset + size]
        if offset + size >= len(self._buffer):
            self._buffer = b""  # consumed: not kept
        return data

    def read(self, size: int | None = -1) -> bytes:
        if self.closed:
            raise ValueError("I/O operation on closed S3 reader")
        if size is None or size < 0:
            return self.readall()
        if size == 0 or (self.size is not None and self.pos >= self.size):
            return b""
        if self.random_access:  # exactly ``size`` bytes unless the object ends first
            end = min(self.pos + size, self._size())
            parts = []
            while self.pos < end:
                part = self._read_random(end - self.pos)
                parts.append(part)
                self.pos += len(part)
            return b"".join(parts)
        else:
            data = self.store.retrier(self._read_block, size)
        self.pos += len(data)
        return data

    def readall(self) -> bytes:
        chunks = []
        while chunk := self.read(self.store.read_chunk):
            chunks.append(chunk)
        return b"".join(chunks)

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self._drop()
        self._buffer = b""
        super().close()


__all__ = [
    "S3_RETRY_POLICY",
    "S3Store",
    "SyncResult",
    "bounded_map",
    "local_etag",
    "parts_of",
    "rechunk",
]
