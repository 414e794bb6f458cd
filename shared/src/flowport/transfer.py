"""Moving Arrow record batches between systems, incrementally and safely across crashes.

A :class:`Source` extracts batches above a high-water mark (``since``) up to an upper bound it
fixes when the extraction starts; a :class:`Sink` loads them and stores the new mark *with* the
data (SQL sinks: in the same transaction; :class:`StoreSink`: a state object written after the
data files, naming them). Output names are deterministic (transfer name + the extract's lower
bound), so a rerun after a crash overwrites what the crashed run left instead of duplicating it.
The source reads two batches ahead on a thread of its own, so its reads overlap the sink's
writes.

    transfer(SqlQuerySource(db, "orders", cursor="updated_at"), StoreSink(store, "orders"),
             name="orders")
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import hashlib
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from flowport.errors import InvalidInput, NotFound
from flowport.formats import ROW_GROUP_ROWS, WriteResult, format_for, read_batches, write_batches
from flowport.keys import join_key
from flowport.parallel import bounded_map, prefetch
from flowport.store import ObjectStore

if TYPE_CHECKING:
    import pyarrow as pa

STATE_DIR = "_flowport_state"


@dataclass(frozen=True)
class Extract:
    """Batches a source produced for rows with ``lower < cursor <= upper`` (bounds may be None:
    no lower bound / a full extraction).

    Sources whose position lives with them (Kafka's committed offsets) give ``label``, a
    deterministic name of what was read (topic, partitions and offset ranges), and ``commit``,
    which :func:`transfer` calls only after the sink has stored the data.
    """

    batches: Iterable[pa.RecordBatch]
    lower: Any = None
    upper: Any = None
    label: str | None = None
    commit: Callable[[], None] | None = None


@dataclass(frozen=True)
class LoadResult:
    """What a sink wrote: rows, bytes (when known) and the objects or tables it wrote to."""

    rows: int
    bytes: int = 0
    written: tuple[str, ...] = ()


@dataclass(frozen=True)
class TransferResult:
    """One transfer: where from and to, what moved, and the cursor range it covered."""

    name: str
    source: str
    target: str
    rows: int
    bytes: int
    written: tuple[str, ...]
    lower: Any
    upper: Any


class Source(Protocol):
    """Something that extracts record batches, from ``since`` (exclusive) when given."""

    uri: str

    def extract(self, since: Any = None) -> Extract: ...


class Sink(Protocol):
    """Something that loads batches and keeps a transfer's high-water mark with the data."""

    uri: str

    def state(self, name: str) -> Any: ...

    def load(self, extract: Extract, name: str) -> LoadResult: ...


def transfer(source: Source, sink: Sink, *, name: str, incremental: bool = True) -> TransferResult:
    """Extract from ``source`` above the mark ``sink`` holds for ``name``, load, store the mark.

    ``incremental=False`` extracts everything (the sink still records the new mark).
    """
    since = sink.state(name) if incremental else None
    extract = source.extract(since)
    # The source reads ahead on its own thread while the sink writes: the two overlap.
    extract = dataclasses.replace(extract, batches=prefetch(extract.batches))
    loaded = sink.load(extract, name)
    if extract.commit is not None:
        extract.commit()
    return TransferResult(
        name=name,
        source=source.uri,
        target=sink.uri,
        rows=loaded.rows,
        bytes=loaded.bytes,
        written=loaded.written,
        lower=extract.lower,
        upper=extract.upper,
    )


# -- cursor values in JSON -----------------------------------------------------------------


def encode_cursor(value: Any) -> Any:
    """A JSON form of a cursor value that :func:`decode_cursor` turns back into its type."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, dt.datetime):
        return {"datetime": value.isoformat()}
    if isinstance(value, dt.date):
        return {"date": value.isoformat()}
    if isinstance(value, decimal.Decimal):
        return {"decimal": str(value)}
    if isinstance(value, list | tuple):
        return [encode_cursor(v) for v in value]
    raise InvalidInput(
        f"cursor value {value!r} ({type(value).__name__}) cannot be stored as a high-water mark; "
        "use an integer, decimal, date or timestamp column"
    )


def decode_cursor(value: Any) -> Any:
    """Inverse of :func:`encode_cursor`."""
    if isinstance(value, list):
        return [decode_cursor(v) for v in value]
    if isinstance(value, dict):
        ((kind, text),) = value.items()
        parse: dict[str, Callable[[str], Any]] = {
            "datetime": dt.datetime.fromisoformat,
            "date": dt.date.fromisoformat,
            "decimal": decimal.Decimal,
        }
        return parse[kind](text)
    return value


def run_id(name: str, lower: Any) -> str:
    """Stable id of one extraction: the same transfer from the same mark gets the same names."""
    raw = json.dumps([name, encode_cursor(lower)], sort_keys=True)
    return hashlib.sha256(raw.encode()).hexdigest()[:12]


# -- object stores -------------------------------------------------------------------------


def root_uri(store: ObjectStore, prefix: str = "") -> str:
    """The URI of ``prefix`` in ``store`` (``s3://bucket/prefix``), for results and lineage."""
    return store.url_for(join_key(prefix, "x"))[: -len("/x")]


class _Splitter:
    """Hands out consecutive slices of a batch stream, ``limit`` rows per part."""

    def __init__(self, batches: Iterable[pa.RecordBatch], limit: int):
        self._it = iter(batches)
        self._pending: pa.RecordBatch | None = None
        self.limit = limit

    def more(self) -> bool:
        while self._pending is None or self._pending.num_rows == 0:
            nxt = next(self._it, None)
            if nxt is None:
                return False
            self._pending = nxt
        return True

    def part(self) -> Iterator[pa.RecordBatch]:
        left = self.limit
        while left > 0 and self.more():
            batch = self._pending
            assert batch is not None
            if batch.num_rows <= left:
                self._pending = None
                left -= batch.num_rows
                yield batch
            else:
                self._pending = batch.slice(left)
                yield batch.slice(0, left)
                left = 0


@dataclass
class StoreSink:
    """Files under ``prefix`` in ``store``: ``<name>-<run>-<n>.<ext>``, at most
    ``max_file_rows`` rows each, then ``_flowport_state/<name>.json`` naming every file written
    so far and the mark. Readers trust the state object; files of a crashed run are replaced
    (same names) or removed by the rerun."""

    store: ObjectStore
    prefix: str
    format: str = "parquet"
    max_file_rows: int = 1_000_000
    row_group_rows: int = ROW_GROUP_ROWS
    compression: str | None = None
    uri: str = field(init=False)

    def __post_init__(self) -> None:
        format_for(f"x.{self.format}", self.format)  # unknown formats fail here
        self.uri = root_uri(self.store, self.prefix)

    def _state_key(self, name: str) -> str:
        return join_key(self.prefix, f"{STATE_DIR}/{name}.json")

    def read_state(self, name: str) -> dict[str, Any]:
        """The state object of ``name`` (``{}`` before its first load)."""
        try:
            return dict(json.loads(self.store.get_bytes(self._state_key(name))))
        except NotFound:
            return {}

    def state(self, name: str) -> Any:
        return decode_cursor(self.read_state(name).get("upper"))

    def files(self, name: str) -> list[str]:
        """Keys of every committed file of transfer ``name``, oldest first."""
        return list(self.read_state(name).get("files", []))

    def load(self, extract: Extract, name: str) -> LoadResult:
        state = self.read_state(name)
        label = extract.label or run_id(name, extract.lower)
        stem = join_key(self.prefix, f"{name}-{label}-")
        ext = {"parquet": "parquet", "csv": "csv", "jsonl": "jsonl"}[self.format]
        written: list[WriteResult] = []
        parts = _Splitter(extract.batches, self.max_file_rows)
        while parts.more():
            key = f"{stem}{len(written):05d}.{ext}"
            written.append(
                write_batches(
                    self.store,
                    key,
                    parts.part(),
                    self.format,
                    row_group_rows=self.row_group_rows,
                    compression=self.compression,
                )
            )
        keys = [w.key for w in written]
        # A crashed run from the same mark may have left more parts than this one wrote.
        leftovers = [o.key for o in self.store.list(stem) if o.key not in keys]
        if leftovers:
            self.store.delete_many(leftovers)
        if extract.upper is not None or written:
            files = [k for k in state.get("files", []) if k not in keys] + keys
            upper = extract.upper if extract.upper is not None else state.get("upper")
            new_state = {"upper": encode_cursor(upper), "files": files}
            self.store.put_bytes(json.dumps(new_state).encode(), self._state_key(name))
        return LoadResult(
            rows=sum(w.rows for w in written),
            bytes=sum(w.bytes for w in written),
            written=tuple(self.store.url_for(k) for k in keys),
        )


@dataclass
class StoreSource:
    """The files under ``prefix`` (or the given ``keys``), read as record batches in key order.

    Incremental by key: ``since`` is the last key read, so new files (with later names, as
    :class:`StoreSink` and Kafka batch files have) are picked up on the next run.
    """

    store: ObjectStore
    prefix: str = ""
    keys: list[str] | None = None
    format: str | None = None
    batch_rows: int = 64 * 1024
    uri: str = field(init=False)

    def __post_init__(self) -> None:
        self.uri = root_uri(self.store, self.prefix)

    def _keys(self) -> list[str]:
        if self.keys is not None:
            return sorted(self.keys)
        return sorted(
            o.key
            for o in self.store.list(self.prefix)
            if f"/{STATE_DIR}/" not in f"/{o.key}" and not o.key.endswith("/")
        )

    def extract(self, since: Any = None) -> Extract:
        keys = [k for k in self._keys() if since is None or k > since]

        def batches() -> Iterator[pa.RecordBatch]:
            for key in keys:
                yield from read_batches(self.store, key, self.format, batch_rows=self.batch_rows)

        return Extract(batches(), lower=since, upper=keys[-1] if keys else None)


@dataclass(frozen=True)
class CopyResult:
    """Objects copied between stores, bytes moved, and how each copy was verified."""

    copied: tuple[str, ...]
    bytes: int
    verified: str


def copy_objects(
    source: ObjectStore,
    target: ObjectStore,
    keys: Iterable[str],
    *,
    concurrency: int = 8,
    verify: bool = True,
) -> CopyResult:
    """Stream each object from ``source`` to the same key in ``target``, ``concurrency`` at a
    time, never whole in memory. ``verify`` reads each copy back and compares SHA-256 digests
    (end to end, whatever checksums the two stores use); a mismatch is a permanent error."""

    def one(key: str) -> int:
        digest = hashlib.sha256()
        size = 0

        def chunks() -> Iterator[bytes]:
            nonlocal size
            for chunk in source.get_stream(key):
                digest.update(chunk)
                size += len(chunk)
                yield chunk

        target.put_stream(chunks(), key)
        if verify:
            check = hashlib.sha256()
            for chunk in target.get_stream(key):
                check.update(chunk)
            if check.digest() != digest.digest():
                raise InvalidInput(
                    f"copy of {source.url_for(key)} to {target.url_for(key)} does not match "
                    "its source (SHA-256 differs)",
                    target=key,
                )
        return size

    wanted = list(keys)
    sizes = bounded_map(wanted, one, concurrency, name="flowport-copy")
    return CopyResult(copied=tuple(wanted), bytes=sum(sizes), verified="sha256" if verify else "")
