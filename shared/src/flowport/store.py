"""The object-store protocol every storage connector implements, and ``LocalStore``.

:class:`BaseStore` follows fsspec's habit: a connector supplies six primitives
(``_put_chunks``, ``_open``, ``_stat``, ``_list``, ``_delete``, ``_copy``) and gets the whole
:class:`ObjectStore` surface, with key validation, prefixes and globbing done once here.
Connectors override a derived method only where the backend has a faster native path.
Data streams in bounded chunks; nothing is held whole in memory unless asked for as bytes.
"""

from __future__ import annotations

import abc
import builtins
import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import BinaryIO, Protocol, runtime_checkable

from flowport.errors import ConfigError, Conflict, NotFound
from flowport.keys import join_key, local_path, matches, validate_key, validate_prefix

CHUNK_SIZE = 8 * 1024 * 1024
Source = bytes | BinaryIO | Iterable[bytes]


@dataclass(frozen=True)
class ObjectInfo:
    """One object (or, in a non-recursive listing, one common prefix ending in '/')."""

    key: str
    size: int
    etag: str | None = None
    last_modified: datetime | None = None
    is_prefix: bool = False


@dataclass(frozen=True)
class DeleteResult:
    """Keys deleted and, per key, why a deletion failed."""

    deleted: list[str] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)


@runtime_checkable
class ObjectStore(Protocol):
    """What flows, tasks and other connectors may rely on from any object store."""

    system: str

    def url_for(self, key: str) -> str: ...
    def put_file(
        self, path: str | os.PathLike[str], key: str, *, if_not_exists: bool = False
    ) -> ObjectInfo: ...
    def put_bytes(self, data: bytes, key: str, *, if_not_exists: bool = False) -> ObjectInfo: ...
    def put_stream(
        self, source: Source, key: str, *, if_not_exists: bool = False
    ) -> ObjectInfo: ...
    def get_file(
        self, key: str, path: str | os.PathLike[str], *, info: ObjectInfo | None = None
    ) -> ObjectInfo: ...
    def get_bytes(self, key: str) -> bytes: ...
    def get_stream(self, key: str, *, chunk_size: int = CHUNK_SIZE) -> Iterator[bytes]: ...
    def open(self, key: str) -> BinaryIO: ...
    def list(
        self, prefix: str = "", *, glob: str | None = None, recursive: bool = True
    ) -> Iterator[ObjectInfo]: ...
    def stat(self, key: str) -> ObjectInfo: ...
    def exists(self, key: str) -> bool: ...
    def delete(self, key: str) -> None: ...
    def delete_many(self, keys: Iterable[str]) -> DeleteResult: ...
    def copy(self, src: str, dst: str) -> ObjectInfo: ...
    def move(self, src: str, dst: str) -> ObjectInfo: ...
    def presign(self, key: str, *, method: str = "GET", expires: int = 3600) -> str: ...


def iter_chunks(source: Source, chunk_size: int = CHUNK_SIZE) -> Iterator[bytes]:
    """Bytes, a binary file object or an iterable of bytes, as an iterator of chunks."""
    if isinstance(source, bytes | bytearray | memoryview):
        yield bytes(source)
    elif hasattr(source, "read"):
        while chunk := source.read(chunk_size):
            yield chunk
    else:
        for chunk in source:
            if chunk:
                yield bytes(chunk)


class BaseStore(abc.ABC):
    """The derived :class:`ObjectStore` surface over six primitives. Keys are relative to
    ``prefix``; primitives receive full keys."""

    #: Human name for messages ("S3", "GCS", "local").
    system: str = "object store"
    #: Whether ``if_not_exists=True`` is supported.
    supports_conditional_put: bool = True

    def __init__(self, prefix: str = ""):
        self.prefix = validate_prefix(prefix, system=self.system).strip("/")

    # -- primitives ------------------------------------------------------------------

    @abc.abstractmethod
    def _put_chunks(self, key: str, chunks: Iterator[bytes], if_not_exists: bool) -> ObjectInfo:
        """Write ``chunks`` to full key ``key``; Conflict if ``if_not_exists`` and it exists."""

    @abc.abstractmethod
    def _open(self, key: str) -> BinaryIO:
        """A streaming binary reader of full key ``key``; NotFound if absent."""

    @abc.abstractmethod
    def _stat(self, key: str) -> ObjectInfo:
        """Info of full key ``key``; NotFound if absent."""

    @abc.abstractmethod
    def _list(self, prefix: str, recursive: bool) -> Iterator[ObjectInfo]:
        """Lazily list full keys under ``prefix`` (and common prefixes when not recursive)."""

    @abc.abstractmethod
    def _delete(self, key: str) -> None:
        """Delete full key ``key``; absent keys are not an error."""

    @abc.abstractmethod
    def _copy(self, src: str, dst: str) -> ObjectInfo:
        """Server-side copy between full keys; NotFound if ``src`` is absent."""

    def url_for(self, key: str) -> str:
        """A URL naming the object, for messages and artifacts."""
        return self._full(key)

    # -- key mapping -----------------------------------------------------------------

    def _full(self, key: str) -> str:
        return join_key(self.prefix, validate_key(key, system=self.system))

    def _rel(self, full_key: str) -> str:
        return full_key[len(self.prefix) + 1 :] if self.prefix else full_key

    def _info(self, info: ObjectInfo) -> ObjectInfo:
        return ObjectInfo(
            self._rel(info.key), info.size, info.etag, info.last_modified, info.is_prefix
        )

    def _not_found(self, key: str) -> NotFound:
        return NotFound(
            f"{self.system} object {self.url_for(key)} not found", system=self.system, target=key
        )

    # -- derived surface -------------------------------------------------------------

    def put_stream(self, source: Source, key: str, *, if_not_exists: bool = False) -> ObjectInfo:
        """Write from bytes, a binary file object or an iterable of chunks, streaming."""
        if if_not_exists and not self.supports_conditional_put:
            raise ConfigError(
                f"{self.system} does not support create-only writes", system=self.system
            )
        return self._info(self._put_chunks(self._full(key), iter_chunks(source), if_not_exists))

    def put_bytes(self, data: bytes, key: str, *, if_not_exists: bool = False) -> ObjectInfo:
        return self.put_stream(data, key, if_not_exists=if_not_exists)

    def put_file(
        self, path: str | os.PathLike[str], key: str, *, if_not_exists: bool = False
    ) -> ObjectInfo:
        with builtins.open(path, "rb") as fh:
            return self.put_stream(fh, key, if_not_exists=if_not_exists)

    def open(self, key: str) -> BinaryIO:
        return self._open(self._full(key))

    def get_stream(self, key: str, *, chunk_size: int = CHUNK_SIZE) -> Iterator[bytes]:
        """The object's content in chunks of at most ``chunk_size`` bytes."""
        reader = self.open(key)  # opened eagerly so a missing key fails at the call

        def chunks() -> Iterator[bytes]:
            with reader:
                while chunk := reader.read(chunk_size):
                    yield chunk

        return chunks()

    def get_bytes(self, key: str) -> bytes:
        with self.open(key) as reader:
            return reader.read()

    def get_file(
        self, key: str, path: str | os.PathLike[str], *, info: ObjectInfo | None = None
    ) -> ObjectInfo:
        """Download to ``path`` atomically: a failed download leaves no partial file.

        ``info``: what ``stat(key)`` returned, when the caller has it (saves a second stat).
        """
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        chunks = self.get_stream(key)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
        try:
            with os.fdopen(fd, "wb") as out:
                for chunk in chunks:
                    out.write(chunk)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return info if info is not None else self.stat(key)

    def stat(self, key: str) -> ObjectInfo:
        return self._info(self._stat(self._full(key)))

    def exists(self, key: str) -> bool:
        try:
            self.stat(key)
        except NotFound:
            return False
        return True

    def list(
        self, prefix: str = "", *, glob: str | None = None, recursive: bool = True
    ) -> Iterator[ObjectInfo]:
        """Lazily list objects under ``prefix``, filtered by ``glob`` on the relative key."""
        validate_prefix(prefix, system=self.system)
        full = join_key(self.prefix, prefix) if self.prefix else prefix  # "p" + "" -> "p/"
        for info in self._list(full, recursive):
            rel = self._info(info)
            if info.is_prefix or matches(rel.key, glob):
                yield rel

    def delete(self, key: str) -> None:
        self._delete(self._full(key))

    def delete_many(self, keys: Iterable[str]) -> DeleteResult:
        result = DeleteResult()
        for key in keys:
            try:
                self.delete(key)
                result.deleted.append(key)
            except Exception as exc:  # reported per key, the rest go on
                result.errors[key] = f"{type(exc).__name__}: {exc}"
        return result

    def copy(self, src: str, dst: str) -> ObjectInfo:
        return self._info(self._copy(self._full(src), self._full(dst)))

    def move(self, src: str, dst: str) -> ObjectInfo:
        info = self.copy(src, dst)
        self.delete(src)
        return info

    def presign(self, key: str, *, method: str = "GET", expires: int = 3600) -> str:
        raise ConfigError(f"{self.system} cannot presign URLs", system=self.system, target=key)


class LocalStore(BaseStore):
    """A directory as an object store: the embedded default for demos and tests."""

    system = "local"

    def __init__(self, root: str | os.PathLike[str], prefix: str = ""):
        super().__init__(prefix)
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    def __repr__(self) -> str:
        return f"LocalStore(root={str(self.root)!r}, prefix={self.prefix!r})"

    def url_for(self, key: str) -> str:
        return self._path(self._full(key)).as_uri()

    def _path(self, full_key: str) -> Path:
        return local_path(self.root, full_key, system=self.system)

    def _info_of(self, full_key: str, path: Path) -> ObjectInfo:
        st = path.stat()
        return ObjectInfo(
            full_key,
            st.st_size,
            etag=f"{st.st_mtime_ns:x}-{st.st_size:x}",
            last_modified=datetime.fromtimestamp(st.st_mtime, tz=timezone.utc),
        )

    def _put_chunks(self, key: str, chunks: Iterator[bytes], if_not_exists: bool) -> ObjectInfo:
        target = self._path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
        try:
            with os.fdopen(fd, "wb") as out:
                for chunk in chunks:
                    out.write(chunk)
            if if_not_exists:
                try:
                    os.link(tmp, target)  # atomic create-only
                except FileExistsError:
                    raise Conflict(
                        f"local object {target} already exists (create-only write)",
                        system=self.system,
                        target=key,
                    ) from None
                os.unlink(tmp)
            else:
                os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return self._info_of(key, target)

    def _open(self, key: str) -> BinaryIO:
        path = self._path(key)
        if not path.is_file():
            raise self._not_found(self._rel(key))
        return path.open("rb")

    def _stat(self, key: str) -> ObjectInfo:
        path = self._path(key)
        if not path.is_file():
            raise self._not_found(self._rel(key))
        return self._info_of(key, path)

    def _list(self, prefix: str, recursive: bool) -> Iterator[ObjectInfo]:
        # The prefix is a string prefix, not a directory: walk from its directory part.
        base_dir = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        start = self.root / base_dir
        if not start.is_dir():
            return
        seen_prefixes: set[str] = set()
        for dirpath, dirnames, filenames in os.walk(start):
            dirnames.sort()
            rel_dir = Path(dirpath).relative_to(self.root).as_posix()
            rel_dir = "" if rel_dir == "." else rel_dir
            for name in sorted(filenames):
                if name.startswith(".") and name.endswith(".part"):
                    continue
                key = join_key(rel_dir, name)
                if not key.startswith(prefix):
                    continue
                rest = key[len(prefix) :]
                if not recursive and "/" in rest:
                    common = prefix + rest.split("/", 1)[0] + "/"
                    if common not in seen_prefixes:
                        seen_prefixes.add(common)
                        yield ObjectInfo(common, 0, is_prefix=True)
                    continue
                yield self._info_of(key, Path(dirpath) / name)

    def _delete(self, key: str) -> None:
        path = self._path(key)
        path.unlink(missing_ok=True)
        # Drop directories the deletion emptied, as an object store has no directories.
        parent = path.parent
        while parent != self.root and parent.is_dir() and not any(parent.iterdir()):
            parent.rmdir()
            parent = parent.parent

    def _copy(self, src: str, dst: str) -> ObjectInfo:
        source = self._path(src)
        if not source.is_file():
            raise self._not_found(self._rel(src))
        with source.open("rb") as fh:
            return self._put_chunks(dst, iter_chunks(fh), False)

    def move(self, src: str, dst: str) -> ObjectInfo:
        source, target = self._path(self._full(src)), self._path(self._full(dst))
        if not source.is_file():
            raise self._not_found(src)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(source, target)
        self._delete(self._full(src))  # prune emptied directories
        return self.stat(dst)

    def presign(self, key: str, *, method: str = "GET", expires: int = 3600) -> str:
        """A ``file://`` URL: local files need no signature."""
        if method.upper() != "GET":
            raise ConfigError("local store presigns GET URLs only", system=self.system, target=key)
        self.stat(key)
        return self.url_for(key)


def sha256_of(chunks: Iterable[bytes]) -> str:
    """Hex sha256 over a stream of chunks (used by tests, benchmarks and sync)."""
    digest = hashlib.sha256()
    for chunk in chunks:
        digest.update(chunk)
    return digest.hexdigest()
