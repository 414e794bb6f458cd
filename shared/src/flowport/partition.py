"""Partitioned transfers: work split into independent tasks a Prefect task runner spreads out
(threads, or a Dask cluster through ``prefect_dask.DaskTaskRunner``).

Each unit writes to a key that depends only on the plan (its index and the number of parts),
so a unit a distributed engine runs twice (a worker died mid-task, or after it finished but
before its result was fetched) overwrites its own output with the same content: never a
second copy. A manifest, written once every part is done, names each part with its rows,
bytes and SHA-256; readers trust the manifest, and parts a crashed run of another plan left
behind are deleted after it is written.

    ranges = split_range(1, 1_000_000, 8)        # 8 KeyRange: lower <= key < upper
    copy_sharded(source, target, "raw/")         # in a flow: one copy task per listing page
"""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import json
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, cast

from flowport.errors import InvalidInput
from flowport.formats import ROW_GROUP_ROWS, write_batches
from flowport.keys import join_key
from flowport.progress import run_logger
from flowport.store import ObjectInfo, ObjectStore
from flowport.transfer import STATE_DIR, CopyResult, copy_objects, decode_cursor, encode_cursor
from flowport.transfer_tasks import TransferTaskBase

if TYPE_CHECKING:
    import pyarrow as pa

MANIFEST = f"{STATE_DIR}/manifest.json"

# -- key ranges ------------------------------------------------------------------------------


@dataclass(frozen=True)
class KeyRange:
    """Partition ``index`` of a key column: ``lower <= key < upper``; ``nulls``: it also takes
    the rows whose key is NULL (partition 0 does, so no row is left out)."""

    index: int
    lower: Any
    upper: Any
    nulls: bool = False


_EPOCH = dt.datetime(1970, 1, 1)


def _scale(value: Any) -> tuple[Callable[[Any], int], Callable[[int], Any]]:
    """Integer positions of a key type and back: integers as they are, dates by day,
    timestamps by microsecond (naive or with a time zone, kept)."""
    if isinstance(value, bool) or not isinstance(value, int | dt.date):
        raise InvalidInput(
            f"cannot split key range of {value!r} ({type(value).__name__}); "
            "partition by an integer, date or timestamp column",
            target=repr(value),
        )
    if isinstance(value, int):
        return int, int
    if isinstance(value, dt.datetime):
        epoch = _EPOCH.replace(tzinfo=value.tzinfo)
        unit = dt.timedelta(microseconds=1)
        return (lambda v: (v - epoch) // unit), (lambda n: epoch + n * unit)
    return (lambda v: v.toordinal()), dt.date.fromordinal


def split_range(low: Any, high: Any, partitions: int) -> list[KeyRange]:
    """``[low, high]`` cut into at most ``partitions`` contiguous ranges of equal width
    (fewer when there are fewer distinct keys). Equal widths balance the work when keys are
    spread evenly (serial ids); for skewed keys pass your own cut points to
    :func:`ranges_from_cuts`."""
    if partitions < 1:
        raise InvalidInput(f"partitions must be at least 1, not {partitions}")
    to_int, from_int = _scale(low)
    lo, hi = to_int(low), to_int(high)
    if hi < lo:
        raise InvalidInput(f"key range is empty: low {low!r} > high {high!r}")
    span = hi - lo + 1
    n = min(partitions, span)
    cuts = [lo + span * i // n for i in range(n + 1)]
    return [KeyRange(i, from_int(cuts[i]), from_int(cuts[i + 1]), nulls=i == 0) for i in range(n)]


def ranges_from_cuts(cuts: Iterable[Any]) -> list[KeyRange]:
    """Ranges between consecutive ``cuts`` (strictly increasing): ``cuts[i] <= key <
    cuts[i+1]``; the first range also takes NULL keys."""
    points = list(cuts)
    if len(points) < 2 or any(b <= a for a, b in itertools.pairwise(points)):
        raise InvalidInput("cuts must be at least two strictly increasing values")
    return [KeyRange(i, points[i], points[i + 1], nulls=i == 0) for i in range(len(points) - 1)]


# -- parts and the manifest ------------------------------------------------------------------


@dataclass(frozen=True)
class PartResult:
    """One part as written: its key, rows, bytes and the SHA-256 of the bytes sent."""

    index: int
    key: str
    rows: int
    bytes: int
    sha256: str
    lower: Any = None
    upper: Any = None


@dataclass(frozen=True)
class Manifest:
    """A partitioned output: its parts in index order, totals, and the manifest's key."""

    key: str
    source: str
    column: str | None
    parts: tuple[PartResult, ...]
    rows: int
    bytes: int

    @property
    def keys(self) -> list[str]:
        """The part keys, in partition order."""
        return [p.key for p in self.parts]


def part_key(prefix: str, index: int, total: int, ext: str = "parquet") -> str:
    """``<prefix>/part-00003-of-00008.parquet``: fixed by the plan, so a rerun overwrites."""
    return join_key(prefix, f"part-{index:05d}-of-{total:05d}.{ext}")


def manifest_key(prefix: str) -> str:
    """Where the manifest of the parts under ``prefix`` lives (beside :class:`StoreSink`'s
    state, so a :class:`~flowport.transfer.StoreSource` over the prefix reads only parts)."""
    return join_key(prefix, MANIFEST)


class _Digest:
    """Forwards ``put_stream`` to a store while hashing what passes (for the part's SHA-256)."""

    def __init__(self, store: ObjectStore) -> None:
        self.store = store
        self.sha256 = hashlib.sha256()
        self.system = store.system

    def url_for(self, key: str) -> str:
        return self.store.url_for(key)

    def put_stream(self, source: Iterable[bytes], key: str, **kwargs: Any) -> ObjectInfo:
        def chunks() -> Iterator[bytes]:
            for chunk in source:
                self.sha256.update(chunk)
                yield chunk

        return self.store.put_stream(chunks(), key, **kwargs)


def write_part(
    store: ObjectStore,
    key: str,
    batches: Iterable[pa.RecordBatch],
    *,
    index: int,
    schema: pa.Schema | None = None,
    format: str | None = None,
    row_group_rows: int = ROW_GROUP_ROWS,
    compression: str | None = None,
    lower: Any = None,
    upper: Any = None,
) -> PartResult:
    """Stream ``batches`` to ``key`` (:func:`flowport.formats.write_batches`), hashing the
    bytes on their way; with ``schema`` an empty part is still a valid file of that schema."""
    digest = _Digest(store)
    written = write_batches(
        cast(ObjectStore, digest),
        key,
        batches,
        format,
        schema=schema,
        row_group_rows=row_group_rows,
        compression=compression,
    )
    return PartResult(
        index=index,
        key=key,
        rows=written.rows,
        bytes=written.bytes,
        sha256=digest.sha256.hexdigest(),
        lower=lower,
        upper=upper,
    )


def write_manifest(
    store: ObjectStore,
    prefix: str,
    parts: Iterable[PartResult],
    *,
    source: str,
    column: str | None = None,
) -> Manifest:
    """Write the manifest of ``parts`` (every index from 0 exactly once, else InvalidInput:
    nothing is published over a lost or doubled part), then delete ``part-*`` objects under
    ``prefix`` it does not name (left by a crashed run of another plan)."""
    ordered = sorted(parts, key=lambda p: p.index)
    indexes = [p.index for p in ordered]
    if indexes != list(range(len(ordered))):
        raise InvalidInput(
            f"{store.url_for(manifest_key(prefix))}: parts {indexes} are not each of "
            f"0..{len(ordered) - 1} once; manifest not written",
            target=manifest_key(prefix),
        )
    key = manifest_key(prefix)
    body = {
        "version": 1,
        "source": source,
        "column": column,
        "rows": sum(p.rows for p in ordered),
        "bytes": sum(p.bytes for p in ordered),
        "parts": [
            {**asdict(p), "lower": encode_cursor(p.lower), "upper": encode_cursor(p.upper)}
            for p in ordered
        ],
    }
    store.put_bytes(json.dumps(body, indent=1).encode(), key)
    named = {p.key for p in ordered}
    stale = [o.key for o in store.list(join_key(prefix, "part-")) if o.key not in named]
    if stale:
        store.delete_many(stale)
    return _manifest(key, body)


def _manifest(key: str, body: dict[str, Any]) -> Manifest:
    parts = tuple(
        PartResult(**{**p, "lower": decode_cursor(p["lower"]), "upper": decode_cursor(p["upper"])})
        for p in body["parts"]
    )
    return Manifest(
        key=key,
        source=body["source"],
        column=body.get("column"),
        parts=parts,
        rows=int(body["rows"]),
        bytes=int(body["bytes"]),
    )


def read_manifest(store: ObjectStore, prefix: str) -> Manifest:
    """The manifest under ``prefix`` (NotFound before one was written)."""
    key = manifest_key(prefix)
    return _manifest(key, json.loads(store.get_bytes(key)))


# -- sharded store copy ----------------------------------------------------------------------


def shard_listing(
    infos: Iterable[ObjectInfo], max_keys: int = 1000, max_bytes: int | None = None
) -> list[list[str]]:
    """A listing cut into pages of at most ``max_keys`` keys (and ``max_bytes``, unless one
    object alone is bigger), in listing order: one shard per page."""
    if max_keys < 1:
        raise InvalidInput(f"max_keys must be at least 1, not {max_keys}")
    shards: list[list[str]] = []
    page: list[str] = []
    size = 0
    for info in infos:
        if info.is_prefix or info.key.endswith("/"):
            continue
        full = len(page) >= max_keys or (
            max_bytes is not None and page and size + info.size > max_bytes
        )
        if full:
            shards.append(page)
            page, size = [], 0
        page.append(info.key)
        size += info.size
    if page:
        shards.append(page)
    return shards


def shard_prefixes(store: ObjectStore, prefix: str = "") -> tuple[list[str], list[str]]:
    """One level of ``prefix`` listed without recursion: the sub-prefixes (each a shard whose
    task lists and copies it) and the loose keys at this level."""
    base = prefix.strip("/")
    prefixes: list[str] = []
    loose: list[str] = []
    for info in store.list(f"{base}/" if base else "", recursive=False):
        (prefixes if info.is_prefix else loose).append(info.key)
    return prefixes, loose


class CopyShard(TransferTaskBase):
    """Copy one shard between stores: the given ``keys``, or everything under ``prefix``
    (listed here, on the worker). Streamed and SHA-256 verified; the unit of retry is the
    shard, and a rerun (a retry, or a Dask worker lost mid-task) overwrites the same keys."""

    def run(
        self,
        source: ObjectStore,
        target: ObjectStore,
        keys: list[str] | None = None,
        prefix: str | None = None,
        concurrency: int = 4,
        verify: bool = True,
    ) -> CopyResult:
        def unit() -> CopyResult:
            wanted = keys if keys is not None else [o.key for o in source.list(prefix or "")]
            return copy_objects(source, target, wanted, concurrency=concurrency, verify=verify)

        return self.retrying(unit)


@dataclass(frozen=True)
class Shard:
    """One unit of a sharded copy: the ``keys`` of a listing page, or a ``prefix`` to list."""

    keys: tuple[str, ...] | None = None
    prefix: str | None = None


class ListShards(TransferTaskBase):
    """List ``prefix`` in ``source`` and cut it into shards (:func:`shard_listing` pages, or
    with ``by="prefix"`` one shard per sub-prefix plus pages of the loose keys). A task of its
    own, so the flow process never opens the store: a store that opened its client may not
    pickle to a distributed worker."""

    def run(
        self, source: ObjectStore, prefix: str = "", by: str = "pages", max_keys: int = 1000
    ) -> list[Shard]:
        def unit() -> list[Shard]:
            if by == "pages":
                pages = shard_listing(source.list(prefix), max_keys)
                return [Shard(keys=tuple(page)) for page in pages]
            subs, loose = shard_prefixes(source, prefix)
            pages = shard_listing((ObjectInfo(k, 0) for k in loose), max_keys)
            return [Shard(prefix=sub) for sub in subs] + [Shard(keys=tuple(p)) for p in pages]

        return self.retrying(unit)


copy_shard = CopyShard()
list_shards = ListShards()


@dataclass(frozen=True)
class ShardedCopyResult:
    """A sharded copy: every key copied (each once), bytes, shards, seconds."""

    copied: tuple[str, ...]
    bytes: int
    shards: int
    seconds: float
    verified: str


def copy_sharded(
    source: ObjectStore,
    target: ObjectStore,
    prefix: str = "",
    *,
    by: str = "pages",
    max_keys: int = 1000,
    concurrency: int = 4,
    verify: bool = True,
) -> ShardedCopyResult:
    """Copy everything under ``prefix`` from ``source`` to ``target`` as independent
    :data:`copy_shard` tasks on the current flow's task runner (call it inside a flow).

    ``by="pages"``: one task lists, and each page of ``max_keys`` keys is one copy task.
    ``by="prefix"``: one level is listed, and each sub-prefix is a task that lists and copies
    its own part (the listing spread over the workers too); loose keys go in pages.
    """
    if by not in ("pages", "prefix"):
        raise InvalidInput(f"copy_sharded: by must be 'pages' or 'prefix', not {by!r}")
    started = time.perf_counter()
    # on the task runner (a worker), not here: the flow process never opens the stores
    shards = list_shards.submit(source, prefix, by=by, max_keys=max_keys).result()
    futures = [
        copy_shard.submit(
            source,
            target,
            keys=None if shard.keys is None else list(shard.keys),
            prefix=shard.prefix,
            concurrency=concurrency,
            verify=verify,
        )
        for shard in shards
    ]
    results = [f.result() for f in futures]
    copied = [k for r in results for k in r.copied]
    if len(set(copied)) != len(copied):
        raise InvalidInput(f"copy_sharded: shards under {prefix!r} overlap")
    seconds = time.perf_counter() - started
    total = sum(r.bytes for r in results)
    run_logger().info(
        "sharded copy %s -> %s: %d objects (%d bytes) in %d shards, %.2f s",
        source.url_for(prefix or "x"),
        target.url_for(prefix or "x"),
        len(copied),
        total,
        len(results),
        seconds,
    )
    return ShardedCopyResult(
        copied=tuple(copied),
        bytes=total,
        shards=len(results),
        seconds=seconds,
        verified="sha256" if verify else "",
    )


class WriteManifest(TransferTaskBase):
    """Publish the manifest of a partitioned output once every part is written, and drop
    parts of other plans; one small idempotent put, retried on transient store errors."""

    def run(
        self,
        store: ObjectStore,
        prefix: str,
        parts: list[PartResult],
        source: str,
        column: str | None = None,
    ) -> Manifest:
        manifest = self.retrying(write_manifest, store, prefix, parts, source=source, column=column)
        run_logger().info(
            "manifest %s: %d parts, %d rows, %d bytes",
            store.url_for(manifest.key),
            len(manifest.parts),
            manifest.rows,
            manifest.bytes,
        )
        return manifest


write_manifest_task = WriteManifest(name="write_manifest")

__all__ = [
    "MANIFEST",
    "CopyShard",
    "KeyRange",
    "ListShards",
    "Manifest",
    "PartResult",
    "Shard",
    "ShardedCopyResult",
    "WriteManifest",
    "copy_shard",
    "copy_sharded",
    "list_shards",
    "manifest_key",
    "part_key",
    "ranges_from_cuts",
    "read_manifest",
    "shard_listing",
    "shard_prefixes",
    "split_range",
    "write_manifest",
    "write_manifest_task",
    "write_part",
]
