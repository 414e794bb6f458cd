"""``GcsStore``: the core ObjectStore over Google Cloud Storage. Plain Python, no Prefect.

Every request is one idempotent unit under the caller's retrier (the google client's own retry
is off). Uploads above ``simple_upload_limit`` use a resumable session driven chunk by chunk
here: a chunk that fails transiently is retried alone, from the offset the session committed,
never from byte 0. Downloads stream and, when a connection drops, reopen at the byte they got
to (pinned to the object's generation). Nothing is held whole in memory.
"""

from __future__ import annotations

import base64
import builtins
import contextlib
import hashlib
import io
import logging
import os
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO, TypeVar
from urllib.parse import quote

import google_crc32c as _google_crc32c

from flowport.errors import ConfigError, FlowportError, InvalidInput, NotFound, PermanentError
from flowport.keys import join_key, validate_key
from flowport.parallel import bounded_map
from flowport.retry import Retrier, RetryPolicy
from flowport.store import CHUNK_SIZE, BaseStore, DeleteResult, ObjectInfo, Source, iter_chunks
from flowport.sync import SyncResult, differs, sync_directory
from flowport_gcs import errors
from flowport_gcs.blocks import GcsBucket

T = TypeVar("T")

#: google-crc32c and google-auth ship without type hints.
google_crc32c: Any = _google_crc32c

_log = logging.getLogger("flowport.gcs")

#: compose accepts at most this many sources per request.
MAX_COMPOSE = 32


@dataclass
class UploadStats:
    """What one upload sent: evidence that a failed chunk resumed instead of restarting."""

    key: str
    size: int = 0
    session_url: str | None = None
    #: Content-Range start offset of every data request, in order (retries included).
    chunk_starts: list[int] = field(default_factory=list)
    #: Payload bytes put on the wire, retries included.
    bytes_sent: int = 0
    #: Chunks uploaded (a simple upload is one chunk).
    chunks: int = 0
    #: Chunks whose request failed and that were resumed (each counted once).
    resumed: int = 0
    #: Failed chunk requests that were retried (a chunk may fail more than once).
    retries: int = 0
    #: Parts of a parallel composite upload (0: not composite).
    composite_parts: int = 0
    #: The resumable session was cancelled after a failure (nothing written at the key).
    cancelled: bool = False


@dataclass(frozen=True)
class Preconditions:
    """GCS generation preconditions of a write (``if_generation_match=0``: create only)."""

    if_generation_match: int | None = None
    if_metageneration_match: int | None = None

    def params(self) -> dict[str, str]:
        out = {}
        if self.if_generation_match is not None:
            out["ifGenerationMatch"] = str(self.if_generation_match)
        if self.if_metageneration_match is not None:
            out["ifMetagenerationMatch"] = str(self.if_metageneration_match)
        return out

    def kwargs(self) -> dict[str, int]:
        out = {}
        if self.if_generation_match is not None:
            out["if_generation_match"] = self.if_generation_match
        if self.if_metageneration_match is not None:
            out["if_metageneration_match"] = self.if_metageneration_match
        return out


def crc32c_b64(checksum: Any) -> str:
    """The base64 big-endian form GCS reports (``crc32c`` field, ``x-goog-hash``)."""
    return base64.b64encode(checksum.digest()).decode()


def crc32c_of_file(path: str | os.PathLike[str], chunk_size: int = CHUNK_SIZE) -> str:
    """Base64 crc32c of a local file, comparable with an object's ``crc32c``."""
    checksum = google_crc32c.Checksum()
    with builtins.open(path, "rb") as fh:
        while chunk := fh.read(chunk_size):
            checksum.update(chunk)
    return crc32c_b64(checksum)


def _pieces(chunks: Iterable[bytes], size: int) -> Iterator[bytes]:
    """Re-cut a stream into pieces of exactly ``size`` bytes (the last one may be shorter).

    Pending input is kept as views of the source's chunks, except a leftover tail, which is
    copied so that a big source chunk is not kept alive for it: cutting a piece holds at most
    the piece, what is pending (less than a piece) and the source chunk being cut.
    """
    held: list[memoryview] = []
    pending = 0
    for chunk in chunks:
        if not held and len(chunk) == size:
            yield chunk
            continue
        view = memoryview(chunk)
        while pending + len(view) >= size:
            take = size - pending
            held.append(view[:take])
            view = view[take:]
            piece = b"".join(held)
            held.clear()
            pending = 0
            yield piece
            del piece  # not kept while the next piece is cut
        if view:
            held.append(view if len(view) == len(chunk) else memoryview(bytes(view)))
            pending += len(view)
    if held:
        yield b"".join(held)


def _parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


class GcsStore(BaseStore):
    """A GCS bucket (and the block's prefix) as a flowport object store."""

    system = "GCS"
    #: Objects per listing page (GCS allows up to 1000).
    page_size: int = 1000

    def __init__(self, block: GcsBucket, retrier: Retrier | None = None):
        super().__init__(block.prefix)
        self.block = block
        self.creds = block.credentials
        self.retrier = retrier or RetryPolicy().bind(errors.is_transient, "gcs")
        #: Called with a byte count as data is committed / received (progress bars).
        self.on_bytes: Callable[[int], None] | None = None
        #: Stats of the most recent upload made through this store (per thread last write).
        self.last_upload: UploadStats | None = None
        self._refresh_lock = threading.Lock()
        self._tls = threading.local()
        self._refreshed = False

    def __repr__(self) -> str:
        return f"GcsStore({self.block.url()!r})"

    # -- plumbing ----------------------------------------------------------------------

    @property
    def bucket_name(self) -> str:
        return self.block.bucket

    @property
    def root_url(self) -> str:
        """``gs://bucket`` or ``gs://bucket/prefix``: what artifacts are keyed by."""
        return "/".join(p for p in (f"gs://{self.bucket_name}", self.prefix) if p)

    def url_for(self, key: str) -> str:
        return f"gs://{self.bucket_name}/{self._full(key)}"

    def _gs(self, full_key: str) -> str:
        return f"gs://{self.bucket_name}/{full_key}"

    @property
    def _where(self) -> str:
        return self.creds.api_endpoint if self.creds.is_custom_endpoint else ""

    @property
    def _http(self) -> Any:
        return self.creds.session(pool_size=self.block.concurrency + 4)

    @property
    def _client(self) -> Any:
        return self.creds.storage_client()

    def _bucket(self) -> Any:
        return self._client.bucket(self.bucket_name)  # never get_bucket(): no extra request

    def _blob(self, full_key: str, for_write: bool = False) -> Any:
        kms = self.block.kms_key_name if for_write else None
        blob = self._bucket().blob(full_key, encryption_key=self._csek_raw(), kms_key_name=kms)
        if for_write and self.block.storage_class:
            blob.storage_class = self.block.storage_class
        return blob

    def _csek_raw(self) -> bytes | None:
        from flowport.secrets import reveal

        value = reveal(self.block.encryption_key)
        return base64.b64decode(value) if value else None

    def _csek_headers(self) -> dict[str, str]:
        raw = self._csek_raw()
        if raw is None:
            return {}
        return {
            "X-Goog-Encryption-Algorithm": "AES256",
            "X-Goog-Encryption-Key": base64.b64encode(raw).decode(),
            "X-Goog-Encryption-Key-Sha256": base64.b64encode(hashlib.sha256(raw).digest()).decode(),
        }

    def _object_path(self, full_key: str) -> str:
        return f"/b/{quote(self.bucket_name, safe='')}/o/{quote(full_key, safe='')}"

    def _refresh_once(self) -> bool:
        """One credential refresh per store after a 401; False when it cannot help."""
        with self._refresh_lock:
            if self._refreshed:
                return False
            self._refreshed = True
        return self.creds.refresh()

    def _call(self, action: str, full_key: str, fn: Callable[..., T], *args: Any, **kw: Any) -> T:
        """One idempotent request under the retrier, client errors translated; a 401 gets one
        credential refresh and one more try before it counts as permanent."""
        target = self._gs(full_key)

        def unit() -> T:
            try:
                return fn(*args, **kw)
            except FlowportError:
                raise
            except Exception as exc:
                if errors.status_of(exc) == 401 and self._refresh_once():
                    try:
                        return fn(*args, **kw)
                    except FlowportError:
                        raise
                    except Exception as again:
                        raise errors.translate(again, action, target, self._where) from again
                raise errors.translate(exc, action, target, self._where) from exc

        return self.retrier(unit)

    def _request(self, method: str, url: str, **kw: Any) -> Any:
        """A raw request; an HTTP error status raises the matching google.api_core error."""
        from google.api_core import exceptions

        gexc: Any = exceptions

        kw.setdefault("timeout", self.creds.timeout)
        resp = self._http.request(method, url, **kw)
        if resp.status_code >= 400:
            try:
                raise gexc.from_http_response(resp)
            finally:
                resp.close()
        return resp

    def _info_from(self, resource: dict[str, Any]) -> ObjectInfo:
        return ObjectInfo(
            key=resource["name"],
            size=int(resource.get("size", 0)),
            etag=resource.get("etag"),
            last_modified=_parse_time(resource.get("updated")),
        )

    @staticmethod
    def _blob_info(blob: Any) -> ObjectInfo:
        return ObjectInfo(blob.name, int(blob.size or 0), blob.etag, blob.updated)

    # -- writes ------------------------------------------------------------------------

    def put_stream(
        self,
        source: Source,
        key: str,
        *,
        if_not_exists: bool = False,
        if_generation_match: int | None = None,
        if_metageneration_match: int | None = None,
        content_type: str | None = None,
        size: int | None = None,
    ) -> ObjectInfo:
        """Write from bytes, a binary file object or an iterable of chunks, streaming.

        ``if_not_exists`` is ``if_generation_match=0`` (create only): a clash is Conflict.
        """
        full = self._full(key)
        pre = Preconditions(0 if if_not_exists else if_generation_match, if_metageneration_match)
        chunks = iter_chunks(source, self.block.chunk_size)
        return self._info(self._write(full, chunks, pre, content_type, size))

    def put_bytes(
        self, data: bytes, key: str, *, if_not_exists: bool = False, **kw: Any
    ) -> ObjectInfo:
        return self.put_stream(data, key, if_not_exists=if_not_exists, size=len(data), **kw)

    def put_file(
        self,
        path: str | os.PathLike[str],
        key: str,
        *,
        if_not_exists: bool = False,
        if_generation_match: int | None = None,
        if_metageneration_match: int | None = None,
        content_type: str | None = None,
    ) -> ObjectInfo:
        """Upload a file: resumable in chunks, or as parallel composed parts above the block's
        ``composite_threshold``."""
        size = os.path.getsize(path)
        threshold = self.block.composite_threshold
        full = self._full(key)
        pre = Preconditions(0 if if_not_exists else if_generation_match, if_metageneration_match)
        if threshold is not None and size >= threshold and size > self.block.chunk_size:
            return self._info(self._put_composite(path, full, size, pre, content_type))
        with builtins.open(path, "rb") as fh:
            chunks = iter_chunks(fh, self.block.chunk_size)
            return self._info(self._write(full, chunks, pre, content_type, size))

    def _put_chunks(self, key: str, chunks: Iterator[bytes], if_not_exists: bool) -> ObjectInfo:
        return self._write(key, chunks, Preconditions(0 if if_not_exists else None), None, None)

    def _write(
        self,
        full_key: str,
        chunks: Iterator[bytes],
        pre: Preconditions,
        content_type: str | None,
        size: int | None,
    ) -> ObjectInfo:
        pieces = _pieces(chunks, self.block.chunk_size)
        head = [next(pieces, b"")]  # a list, so that no frame keeps the first chunk alive
        whole = len(head[0]) < self.block.chunk_size or size == len(head[0])
        if whole and len(head[0]) <= self.block.simple_upload_limit:
            return self._upload_simple(full_key, head.pop(), pre, content_type)
        return self._upload_resumable(full_key, _prepend(head, pieces), pre, content_type, size)

    def _upload_simple(
        self, full_key: str, data: bytes, pre: Preconditions, content_type: str | None
    ) -> ObjectInfo:
        """One multipart request: the unit retried as a whole (it is small)."""
        stats = self._new_stats(full_key, len(data))
        stats.chunks = 1

        def unit() -> ObjectInfo:
            blob = self._blob(full_key, for_write=True)
            stats.chunk_starts.append(0)
            stats.bytes_sent += len(data)
            blob.upload_from_file(
                io.BytesIO(data),
                size=len(data),
                content_type=content_type,
                retry=None,
                checksum="crc32c",
                timeout=self.creds.timeout,
                **pre.kwargs(),
            )
            return self._blob_info(blob)

        info = self._call("upload", full_key, unit)
        if self.on_bytes:
            self.on_bytes(len(data))
        return info

    def _start_session(
        self, full_key: str, pre: Preconditions, content_type: str | None, size: int | None
    ) -> str:
        blob = self._blob(full_key, for_write=True)
        url: str = self._call(
            "start of resumable upload",
            full_key,
            blob.create_resumable_upload_session,
            content_type=content_type or "application/octet-stream",
            size=size,
            client=self._client,
            timeout=self.creds.timeout,
            checksum=None,
            retry=None,
            **pre.kwargs(),
        )
        return url

    def _upload_resumable(
        self,
        full_key: str,
        pieces: Iterator[bytes],
        pre: Preconditions,
        content_type: str | None,
        size: int | None,
    ) -> ObjectInfo:
        """Drive a resumable session chunk by chunk; each chunk is its own retried unit.

        No look-ahead: at most the chunk being sent and the next one being cut are in memory. A
        short chunk is the last; a stream of unknown size that ends on a chunk boundary is
        finalized by an empty request.
        """
        stats = self._new_stats(full_key, size or 0)
        stats.session_url = self._start_session(full_key, pre, content_type, size)
        checksum = google_crc32c.Checksum()
        offset = 0
        result: dict[str, Any] | None = None
        try:
            piece = next(pieces, None)
            while piece is not None:
                end = offset + len(piece)
                last = len(piece) < self.block.chunk_size or (size is not None and end >= size)
                before = crc32c_b64(checksum)
                checksum.update(piece)
                crcs = (before, crc32c_b64(checksum))
                stats.chunks += 1
                result = self._send_chunk(stats, piece, offset, last, size, crcs)
                offset = end
                del piece  # sent: not kept while the next chunk is read
                piece = None if last else next(pieces, None)
            if result is None:  # the stream ended on a chunk boundary
                crc = crc32c_b64(checksum)
                result = self._send_chunk(stats, b"", offset, True, size, (crc, crc))
        except BaseException as exc:
            # The source failed (or a chunk gave up) before the last byte: nothing may appear
            # at the key, so the session is cancelled rather than left to expire.
            if result is None:
                self._cancel_session(stats, exc)
            raise
        assert result is not None
        stats.size = offset
        self._verify(full_key, result, offset, crc32c_b64(checksum))
        return self._info_from(result)

    def _cancel_session(self, stats: UploadStats, cause: BaseException) -> None:
        """DELETE the resumable session (GCS answers 499): its bytes are dropped and the
        object at the key, if any, is untouched. Best effort: the original failure matters
        more, and an unfinished session expires on its own after a week."""
        from google.api_core import exceptions as gexc

        url = stats.session_url or ""

        def unit() -> None:
            try:
                self._request("DELETE", url, headers=self._csek_headers()).close()
            except gexc.GoogleAPICallError as exc:
                if errors.status_of(exc) in (499, 404, 410):  # cancelled, or already gone
                    return
                raise

        try:
            self._call("cancel of resumable upload", stats.key, unit)
            stats.cancelled = True
        except Exception as exc:
            _log.warning(
                "GCS resumable upload of %s could not be cancelled (%s) after %s; "
                "the session expires on its own",
                self._gs(stats.key),
                exc,
                type(cause).__name__,
            )

    def _verify(self, full_key: str, resource: dict[str, Any], size: int, crc: str) -> None:
        got_size = int(resource.get("size", -1))
        got_crc = resource.get("crc32c")
        if got_size != size or (got_crc is not None and got_crc != crc):
            raise PermanentError(
                f"GCS upload of {self._gs(full_key)} finished with {got_size} bytes / crc32c "
                f"{got_crc}, but {size} bytes / crc32c {crc} were sent: the object is corrupt",
                system=self.system,
                target=self._gs(full_key),
            )

    def _session_status(self, url: str, total: str) -> int | dict[str, Any]:
        """Ask the session how many bytes it committed (or get the finished object)."""
        resp = self._request(
            "PUT",
            url,
            data=b"",
            headers={"Content-Range": f"bytes */{total}", **self._csek_headers()},
        )
        if resp.status_code in (200, 201):
            return dict(resp.json())
        return _committed(resp)

    def _checksum_probe(
        self, url: str, full_key: str, start: int, end: int, crcs: tuple[str, str]
    ) -> int | dict[str, Any]:
        """fake-gcs-server: which of 'none' or 'all' of a chunk the session kept, read from the
        crc32c it reports for the bytes received so far (an empty, non-final request that it
        answers with 308 and never commits on). It keeps a request's body whole or not at all.
        """
        from google.api_core import exceptions as gexc

        try:
            resp = self._request(
                "PUT",
                url,
                data=b"",
                headers={"Content-Range": f"bytes {start}-{start - 1}/*", **self._csek_headers()},
            )
        except gexc.NotFound:  # the session is gone: it finished with the last chunk?
            resp = None
        if resp is None or resp.status_code in (200, 201):
            if resp is not None:
                resp.close()
            blob = self._meta_blob(full_key)
            if int(blob.size or 0) == end and blob.crc32c == crcs[1]:
                return {
                    "name": blob.name,
                    "size": str(end),
                    "crc32c": blob.crc32c,
                    "etag": blob.etag,
                    "updated": blob._properties.get("updated"),
                }
            raise PermanentError(
                f"GCS resumable session for {self._gs(full_key)} is gone and the object does "
                f"not hold the data sent",
                system=self.system,
                target=self._gs(full_key),
            )
        body = resp.json() if resp.content else {}
        resp.close()
        reported = body.get("crc32c") or "AAAAAA=="  # nothing received yet
        if reported == crcs[0]:
            return start
        if reported == crcs[1]:
            return end
        raise PermanentError(
            f"GCS resumable session for {self._gs(full_key)} holds data that matches neither "
            f"{start} nor {end} bytes sent; cannot resume",
            system=self.system,
            target=self._gs(full_key),
        )

    def _send_chunk(
        self,
        stats: UploadStats,
        piece: bytes,
        start: int,
        last: bool,
        size: int | None,
        crcs: tuple[str, str] = ("", ""),
    ) -> dict[str, Any] | None:
        """Bring the session to ``start + len(piece)`` committed bytes; one retried unit.

        After a failure the unit first learns what the session kept (a status query, or on
        fake-gcs-server a checksum probe) and sends only what is missing: earlier chunks are
        never sent again, and a chunk the session kept is not sent twice.
        """
        end = start + len(piece)
        total = str(end) if last else (str(size) if size is not None else "*")
        state = {"committed": start, "suspect": False, "resumed": False}
        mode = self.block.resume_mode

        def unit() -> dict[str, Any] | None:
            if state["suspect"]:
                stats.retries += 1
                stats.resumed += not state["resumed"]  # once per chunk, however many tries
                state["resumed"] = True
                if mode == "checksum":
                    kept = self._checksum_probe(
                        stats.session_url or "", stats.key, start, end, crcs
                    )
                    if isinstance(kept, dict):
                        return kept
                    self._advance(state, kept)
                else:
                    status = self._session_status(stats.session_url or "", total)
                    if isinstance(status, dict):
                        return status
                    if status < start:
                        raise PermanentError(
                            f"GCS resumable session for {self._gs(stats.key)} reports "
                            f"{status} bytes committed, below the chunk at {start} it was "
                            f"sending; the session lost data",
                            system=self.system,
                            target=self._gs(stats.key),
                        )
                    self._advance(state, min(status, end))
                state["suspect"] = False
            while True:
                done = int(state["committed"])
                if done >= end and not last:
                    return None
                if done >= end:  # all bytes are in; finalize
                    content_range = f"bytes */{total}"
                    body: bytes | memoryview = b""
                else:
                    content_range = f"bytes {done}-{end - 1}/{total}"
                    body = piece if done == start else memoryview(piece)[done - start :]
                stats.chunk_starts.append(done)
                stats.bytes_sent += len(body)
                state["suspect"] = True
                resp = self._request(
                    "PUT",
                    stats.session_url or "",
                    data=body,
                    headers={"Content-Range": content_range, **self._csek_headers()},
                )
                state["suspect"] = False
                if resp.status_code in (200, 201):
                    self._advance(state, end)
                    return dict(resp.json())
                if resp.status_code == 308:
                    committed = _committed(resp)
                    if committed < done:
                        raise PermanentError(
                            f"GCS resumable session for {self._gs(stats.key)} went back from "
                            f"{done} to {committed} committed bytes",
                            system=self.system,
                            target=self._gs(stats.key),
                        )
                    self._advance(state, min(committed, end))
                    if last and committed >= end:
                        raise PermanentError(
                            f"GCS kept the resumable upload of {self._gs(stats.key)} open "
                            f"after its last byte",
                            system=self.system,
                            target=self._gs(stats.key),
                        )
                    continue
                raise PermanentError(  # pragma: no cover - 2xx other than 200/201
                    f"GCS answered {resp.status_code} to a resumable chunk of "
                    f"{self._gs(stats.key)}",
                    system=self.system,
                    target=self._gs(stats.key),
                )

        return self._call("resumable upload chunk", stats.key, unit)

    def _new_stats(self, full_key: str, size: int) -> UploadStats:
        stats = UploadStats(full_key, size=size)
        self._tls.stats = stats
        self.last_upload = stats
        return stats

    def _advance(self, state: dict[str, Any], committed: int) -> None:
        gained = committed - int(state["committed"])
        state["committed"] = committed
        if gained > 0 and self.on_bytes:
            self.on_bytes(gained)

    # -- parallel composite upload -----------------------------------------------------

    def _put_composite(
        self,
        path: str | os.PathLike[str],
        full_key: str,
        size: int,
        pre: Preconditions,
        content_type: str | None,
    ) -> ObjectInfo:
        """Upload ``path`` as parallel parts (each a resumable upload) and compose them."""
        granule = self.block.chunk_size
        parts = max(2, min(MAX_COMPOSE, self.block.concurrency * 2))
        part_size = -(-size // parts)
        part_size = -(-part_size // granule) * granule  # whole chunks per part
        ranges = [(o, min(part_size, size - o)) for o in range(0, size, part_size)]
        run_id = uuid.uuid4().hex[:12]
        temp_keys = [f"{full_key}.flowport-part-{run_id}-{i:02d}" for i in range(len(ranges))]
        stats = UploadStats(full_key, size=size, composite_parts=len(ranges))

        def upload_part(i: int) -> UploadStats:
            offset, length = ranges[i]
            with builtins.open(path, "rb") as fh:
                fh.seek(offset)
                chunks = _read_range(fh, length, self.block.chunk_size)
                self._write(temp_keys[i], chunks, Preconditions(), content_type, length)
            return getattr(self._tls, "stats", None) or UploadStats(temp_keys[i])

        try:
            indexes = range(len(ranges))
            for part in bounded_map(
                indexes, upload_part, self.block.concurrency, "flowport-gcs-part"
            ):
                stats.bytes_sent += part.bytes_sent
                stats.chunks += part.chunks
                stats.resumed += part.resumed
                stats.retries += part.retries
            info = self._compose(temp_keys, full_key, pre, content_type)
        finally:
            for key in temp_keys:
                with contextlib.suppress(FlowportError):
                    self._delete(key)
        self.last_upload = stats
        return info

    def compose(
        self,
        sources: list[str],
        key: str,
        *,
        if_generation_match: int | None = None,
        if_metageneration_match: int | None = None,
        content_type: str | None = None,
    ) -> ObjectInfo:
        """Concatenate objects server-side into ``key`` (any number: composed in rounds)."""
        full_sources = [self._full(s) for s in sources]
        pre = Preconditions(if_generation_match, if_metageneration_match)
        return self._info(self._compose(full_sources, self._full(key), pre, content_type))

    def _compose(
        self,
        sources: list[str],
        full_key: str,
        pre: Preconditions,
        content_type: str | None,
    ) -> ObjectInfo:
        if not sources:
            raise InvalidInput("GCS compose needs at least one source", system=self.system)
        temps: list[str] = []
        try:
            while len(sources) > MAX_COMPOSE:  # fold into intermediate objects
                batch: list[str] = []
                for i in range(0, len(sources), MAX_COMPOSE):
                    temp = f"{full_key}.flowport-compose-{uuid.uuid4().hex[:12]}"
                    self._compose_once(sources[i : i + MAX_COMPOSE], temp, Preconditions(), None)
                    temps.append(temp)
                    batch.append(temp)
                sources = batch
            return self._compose_once(sources, full_key, pre, content_type)
        finally:
            for temp in temps:
                with contextlib.suppress(FlowportError):
                    self._delete(temp)

    def _compose_once(
        self, sources: list[str], full_key: str, pre: Preconditions, content_type: str | None
    ) -> ObjectInfo:
        def unit() -> ObjectInfo:
            dest = self._blob(full_key, for_write=True)
            if content_type:
                dest.content_type = content_type
            dest.compose(
                [self._blob(s) for s in sources],
                retry=None,
                timeout=self.creds.timeout,
                **pre.kwargs(),
            )
            return self._blob_info(dest)

        return self._call("compose", full_key, unit)

    # -- reads -------------------------------------------------------------------------

    def _media_url(self, full_key: str) -> str:
        return f"{self.creds.api_endpoint}/download/storage/v1{self._object_path(full_key)}"

    def _get_media(
        self, full_key: str, start: int, generation: str | None, end: int | None = None
    ) -> Any:
        """GET the object's bytes from ``start`` (to ``end`` inclusive, when given)."""
        params = {"alt": "media"}
        if generation:
            params["generation"] = generation  # a resumed read sees the same version
        headers = {"Accept-Encoding": "gzip", **self._csek_headers()}  # stored bytes, as-is
        if end is not None:
            headers["Range"] = f"bytes={start}-{end}"
        elif start:
            headers["Range"] = f"bytes={start}-"
        return self._request(
            "GET", self._media_url(full_key), params=params, headers=headers, stream=True
        )

    def _open(self, key: str) -> BinaryIO:
        resp = self._call("download", key, self._get_media, key, 0, None)
        return _Reader(self, key, resp)  # type: ignore[return-value]

    def get_file(
        self, key: str, path: str | os.PathLike[str], *, info: ObjectInfo | None = None
    ) -> ObjectInfo:
        """Download to ``path`` atomically, in ``chunk_size`` reads, resuming dropped reads.

        ``info``: what ``stat(key)`` returned, when the caller has it; it is returned (no
        second metadata request) unless the object downloaded is not the one it describes.
        """
        import tempfile

        target = Path(path)
        reader = self.open(key)  # NotFound before any file is created
        size = int(getattr(reader, "size", -1))
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
        try:
            with os.fdopen(fd, "wb") as out, reader:
                while chunk := reader.read(self.block.chunk_size):
                    out.write(chunk)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        if info is not None and info.size == size:
            return replace(info, key=key)
        return self.stat(key)  # no info, or the object changed since the caller's stat

    def _stat(self, key: str) -> ObjectInfo:
        return self._blob_info(self._meta_blob(key))

    def _meta_blob(self, key: str) -> Any:
        blob = self._call(
            "stat",
            key,
            self._bucket().get_blob,
            key,
            encryption_key=self._csek_raw(),
            retry=None,
            timeout=self.creds.timeout,
        )
        if blob is None:
            raise self._not_found(self._rel(key))
        return blob

    def metadata(self, key: str) -> dict[str, Any]:
        """GCS metadata of ``key``: generation, metageneration, crc32c, md5, class, kms, ..."""
        blob = self._meta_blob(self._full(key))
        return {
            "key": key,
            "size": int(blob.size or 0),
            "generation": blob.generation,
            "metageneration": blob.metageneration,
            "crc32c": blob.crc32c,
            "md5": blob.md5_hash,
            "etag": blob.etag,
            "content_type": blob.content_type,
            "storage_class": blob.storage_class,
            "kms_key_name": blob.kms_key_name,
            "component_count": blob.component_count,
            "updated": blob.updated,
        }

    def _list(self, prefix: str, recursive: bool) -> Iterator[ObjectInfo]:
        for item in self._list_raw(prefix, recursive):
            if "prefix" in item:
                yield ObjectInfo(item["prefix"], 0, is_prefix=True)
            else:
                yield self._info_from(item)

    def _list_raw(self, prefix: str, recursive: bool) -> Iterator[dict[str, Any]]:
        """Listing resources, page by page (each page one retried request), in key order."""
        url = f"{self.creds.api_endpoint}/storage/v1/b/{quote(self.bucket_name, safe='')}/o"
        params: dict[str, str] = {
            "prefix": prefix,
            "maxResults": str(self.page_size),
            "fields": "items(name,size,etag,updated,crc32c,generation),prefixes,nextPageToken",
        }
        if not recursive:
            params["delimiter"] = "/"
        page_token: str | None = None
        while True:
            page_params = {**params, **({"pageToken": page_token} if page_token else {})}

            def fetch(p: dict[str, str] = page_params) -> dict[str, Any]:
                resp = self._request("GET", url, params=p)
                return dict(resp.json())

            page = self._call("listing", prefix or "*", fetch)
            entries = [(i["name"], i) for i in page.get("items", [])]
            entries += [(p, {"prefix": p}) for p in page.get("prefixes", [])]
            for _, entry in sorted(entries, key=lambda e: e[0]):
                yield entry
            page_token = page.get("nextPageToken")
            if not page_token:
                return

    # -- delete, copy, presign ---------------------------------------------------------

    def _delete(self, key: str) -> None:
        try:
            self._call("delete", key, self._bucket().delete_blob, key, retry=None)
        except NotFound:
            return

    def delete_many(self, keys: Iterable[str]) -> DeleteResult:
        """Delete in parallel (``concurrency`` requests at a time); failures reported per key."""
        result = DeleteResult()
        todo: list[str] = []
        for key in keys:
            try:
                validate_key(key, system=self.system)
                todo.append(key)
            except InvalidInput as exc:
                result.errors[key] = f"{type(exc).__name__}: {exc}"

        def one(key: str) -> tuple[str, str | None]:
            try:
                self.delete(key)
                return key, None
            except Exception as exc:  # reported per key, the rest go on
                return key, f"{type(exc).__name__}: {exc}"

        for key, error in bounded_map(todo, one, self.block.concurrency, "flowport-gcs-delete"):
            if error is None:
                result.deleted.append(key)
            else:
                result.errors[key] = error
        return result

    def copy(
        self,
        src: str,
        dst: str,
        *,
        if_generation_match: int | None = None,
        if_metageneration_match: int | None = None,
    ) -> ObjectInfo:
        pre = Preconditions(if_generation_match, if_metageneration_match)
        return self._info(self._rewrite(self._full(src), self._full(dst), pre))

    def copy_to(
        self,
        src: str,
        dest: GcsStore,
        dst: str,
        *,
        if_generation_match: int | None = None,
        if_metageneration_match: int | None = None,
    ) -> ObjectInfo:
        """Server-side copy of ``src`` here to ``dst`` in ``dest`` (another bucket or prefix)."""
        pre = Preconditions(if_generation_match, if_metageneration_match)
        info = self._rewrite(self._full(src), dest._full(dst), pre, dest)
        return dest._info(info)

    def _copy(self, src: str, dst: str) -> ObjectInfo:
        return self._rewrite(src, dst, Preconditions())

    def _rewrite(
        self, src: str, dst: str, pre: Preconditions, dest_store: GcsStore | None = None
    ) -> ObjectInfo:
        """Server-side copy with ``rewrite``: big objects take several calls, each one unit
        resumed by its token."""
        target = dest_store or self
        source = self._blob(src)
        dest = target._blob(dst, for_write=True)
        rewrite_token: str | None = None
        copied = 0
        while True:
            try:
                rewrite_token, rewritten, _ = self._call(
                    f"copy from {self._gs(src)}",
                    dst,
                    dest.rewrite,
                    source,
                    token=rewrite_token,
                    retry=None,
                    timeout=self.creds.timeout,
                    **pre.kwargs(),
                )
            except NotFound as exc:
                raise NotFound(
                    f"GCS copy source {self._gs(src)} (or the bucket of "
                    f"gs://{target.bucket_name}/{dst}) not found",
                    system=self.system,
                    target=self._gs(src),
                ) from exc
            if self.on_bytes and rewritten and rewritten > copied:
                self.on_bytes(rewritten - copied)
                copied = rewritten
            if rewrite_token is None:
                break
        if dest.size is None:  # some servers answer a rewrite without the resource
            return target._stat(dst)
        return self._blob_info(dest)

    def presign(self, key: str, *, method: str = "GET", expires: int = 3600) -> str:
        """A v4 signed URL (needs a service-account key on the credentials block)."""
        full = self._full(key)
        kw: dict[str, Any] = {}
        signer = self.creds.signing_credentials()
        if signer is None:
            creds = self.creds.google_credentials()
            email = getattr(creds, "service_account_email", None)
            if self.creds.anonymous or not email:
                raise ConfigError(
                    "GCS signed URLs need a service-account key: set service_account_info or "
                    "service_account_file on the GcpCredentials block",
                    system=self.system,
                    target=self._gs(full),
                )
            if not getattr(creds, "token", None):
                self.creds.refresh()
            kw = {"service_account_email": email, "access_token": creds.token}
        else:
            kw = {"credentials": signer}
        if self.creds.is_custom_endpoint:
            kw["api_access_endpoint"] = self.creds.api_endpoint
        headers = None
        if self._csek_raw() is not None:
            headers = {k: v for k, v in self._csek_headers().items()}
        return str(
            self._blob(full).generate_signed_url(
                version="v4",
                expiration=timedelta(seconds=expires),
                method=method.upper(),
                headers=headers,
                **kw,
            )
        )

    # -- sync --------------------------------------------------------------------------

    def sync(
        self,
        local_dir: str | os.PathLike[str],
        prefix: str = "",
        *,
        direction: str = "upload",
        delete: bool = False,
        dry_run: bool = False,
        compare: str = "size_mtime",
        concurrency: int = 4,
    ) -> SyncResult:
        """Make ``prefix`` match ``local_dir`` (upload) or the reverse (download).

        A file is transferred when missing, when its size differs, and then when the source is
        newer (``size_mtime``) or the crc32c differs (``crc32c``; ``etag`` is an alias, as
        flowport-s3 names its content comparison). ``delete`` removes what the source does not
        have; ``dry_run`` only reports. Downloads refuse every key that would land outside
        ``local_dir`` before writing anything.
        """
        if direction not in ("upload", "download"):
            raise InvalidInput(
                f"sync direction must be 'upload' or 'download', not {direction!r}",
                system=self.system,
            )
        if compare not in ("size_mtime", "crc32c", "etag"):
            raise InvalidInput(
                f"sync compare must be 'size_mtime', 'crc32c' or 'etag', not {compare!r}",
                system=self.system,
            )
        base = prefix.strip("/")
        crc32c: dict[str, str | None] = {}

        def listing() -> Iterator[ObjectInfo]:
            # The raw listing, for the crc32c that ObjectInfo does not carry.
            full_base = join_key(self.prefix, base) if self.prefix else base
            list_prefix = f"{full_base}/" if full_base else ""
            for item in self._list_raw(list_prefix, True):
                rel = item["name"][len(list_prefix) :]
                if rel and not rel.endswith("/"):  # "folder" placeholders are not files
                    key = join_key(base, rel) if base else rel
                    crc32c[key] = item.get("crc32c")
                    yield replace(self._info_from(item), key=key)

        def crc32c_differs(path: Path, info: ObjectInfo) -> bool:
            return crc32c.get(info.key) != crc32c_of_file(path)

        content = crc32c_differs if compare != "size_mtime" else None
        return sync_directory(
            self,
            local_dir,
            prefix,
            direction=direction,
            delete=delete,
            dry_run=dry_run,
            concurrency=concurrency,
            differs=lambda path, info, upload: differs(path, info, upload, content),
            listing=listing(),
            delete_error=PermanentError,
            thread_name="flowport-gcs-sync",
        )


def _committed(resp: Any) -> int:
    """Bytes a 308 answer says the session holds (``Range: bytes=0-N`` -> N+1; none -> 0)."""
    value = resp.headers.get("Range")
    resp.close()
    if not value:
        return 0
    return int(value.rsplit("-", 1)[1]) + 1


def _prepend(head: list[bytes], rest: Iterator[bytes]) -> Iterator[bytes]:
    """``head``'s items, then ``rest``; popped, so no reference outlives its turn."""
    while head:
        yield head.pop(0)
    yield from rest


def _read_range(fh: BinaryIO, length: int, chunk_size: int) -> Iterator[bytes]:
    while length > 0:
        chunk = fh.read(min(chunk_size, length))
        if not chunk:
            return
        length -= len(chunk)
        yield chunk


class _Reader(io.RawIOBase):
    """A streaming reader of one object that reopens at its position after a dropped
    connection (same generation), and checks the crc32c of a complete read.

    It is seekable: after a seek it reads with bounded ranged GETs (at least ``min_range``
    bytes each, pinned to the generation), so a Parquet reader fetches only the footer and the
    column chunks it needs. A seeked read is not checked against the object's crc32c (it does
    not see every byte); each range is checked for its length.
    """

    #: Smallest ranged GET after a seek (small reads are served from what it brought).
    min_range = 64 * 1024

    def __init__(self, store: GcsStore, full_key: str, resp: Any):
        super().__init__()
        self._store = store
        self._key = full_key
        self._resp: Any = resp
        self._pos = 0
        self._size = int(resp.headers.get("Content-Length", 0))
        self._generation = resp.headers.get("X-Goog-Generation")
        self._expected = _hash_header(resp.headers.get("X-Goog-Hash"), "crc32c")
        self._checksum = google_crc32c.Checksum()
        #: True once the reader has been seeked: reads are bounded ranged GETs from then on.
        self.random_access = False
        self._buffer = b""
        self._buffer_at = 0

    @property
    def size(self) -> int:
        """Bytes in the object."""
        return self._size

    @property
    def generation(self) -> str | None:
        """The generation every request of this reader is pinned to."""
        return str(self._generation) if self._generation else None

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if self.closed:
            raise ValueError("I/O operation on closed GCS reader")
        if whence == io.SEEK_SET:
            target = offset
        elif whence == io.SEEK_CUR:
            target = self._pos + offset
        elif whence == io.SEEK_END:
            target = self._size + offset
        else:
            raise ValueError(f"invalid whence {whence!r}")
        if target < 0:
            raise OSError(f"negative seek position {target}")
        if target != self._pos:
            self._drop()  # the open stream is elsewhere: ranged GETs from here on
            self.random_access = True
            self._checksum = None  # not every byte will be seen in order
            self._pos = target
        return self._pos

    def _read_unit(self, size: int) -> bytes:
        if self._resp is None:
            self._resp = self._store._get_media(self._key, self._pos, self._generation)
        try:
            data: bytes = self._resp.raw.read(size, decode_content=False)
        except BaseException:
            self._drop()
            raise
        if not data and self._pos < self._size:
            self._drop()
            raise ConnectionResetError(
                f"stream ended at byte {self._pos} of {self._size}"
            )  # transient: reopen at _pos
        return data

    def _range_unit(self, size: int) -> bytes:
        """One bounded ranged GET from ``_pos``: the retried unit of a random-access read."""
        start = self._pos
        end = min(start + max(size, self.min_range), self._size) - 1
        resp = self._store._get_media(self._key, start, self._generation, end)
        try:
            data: bytes = resp.raw.read(decode_content=False)
        finally:
            resp.close()
        if len(data) != end - start + 1:
            raise ConnectionResetError(f"range {start}-{end} ended after {len(data)} bytes")
        if self._store.on_bytes:
            self._store.on_bytes(len(data))
        return data

    def _read_random(self, size: int) -> bytes:
        end = min(self._pos + size, self._size)
        parts = []
        while self._pos < end:
            offset = self._pos - self._buffer_at
            if not (0 <= offset < len(self._buffer)):
                self._buffer = self._store._call(
                    "download", self._key, self._range_unit, end - self._pos
                )
                self._buffer_at, offset = self._pos, 0
            part = self._buffer[offset : offset + end - self._pos]
            if offset + len(part) >= len(self._buffer):
                self._buffer = b""  # consumed: not kept
            parts.append(part)
            self._pos += len(part)
        return b"".join(parts)

    def read(self, size: int | None = -1) -> bytes:
        if self.closed:
            raise ValueError("I/O operation on closed GCS reader")
        if size is None or size < 0:
            return b"".join(iter(lambda: self.read(CHUNK_SIZE), b""))
        if self._pos >= self._size or size == 0:
            self._finish()
            return b""
        if self.random_access:
            return self._read_random(size)
        data = self._store._call("download", self._key, self._read_unit, size)
        self._pos += len(data)
        self._checksum.update(data)
        if self._store.on_bytes:
            self._store.on_bytes(len(data))
        if self._pos >= self._size:
            self._finish()
        return data

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def _finish(self) -> None:
        if self._expected and self._checksum is not None:
            got = crc32c_b64(self._checksum)
            self._checksum = None
            if got != self._expected:
                raise PermanentError(
                    f"GCS download of {self._store._gs(self._key)} is corrupt: crc32c {got}, "
                    f"expected {self._expected}",
                    system="GCS",
                    target=self._store._gs(self._key),
                )
        self._drop()

    def _drop(self) -> None:
        if self._resp is not None:
            with contextlib.suppress(Exception):
                self._resp.close()
            self._resp = None

    def close(self) -> None:
        self._drop()
        self._buffer = b""
        super().close()


def _hash_header(value: str | None, name: str) -> str | None:
    for part in (value or "").split(","):
        k, _, v = part.strip().partition("=")
        if k == name and v:
            return v
    return None


__all__ = [
    "GcsStore",
    "Preconditions",
    "SyncResult",
    "UploadStats",
    "crc32c_of_file",
]
