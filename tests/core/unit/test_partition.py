"""flowport.partition offline: key-range splits, parts with SHA-256, manifests, listing shards."""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path

import pyarrow as pa
import pytest

from flowport.errors import InvalidInput
from flowport.partition import (
    KeyRange,
    PartResult,
    part_key,
    ranges_from_cuts,
    read_manifest,
    shard_listing,
    split_range,
    write_manifest,
    write_part,
)
from flowport.store import LocalStore, ObjectInfo


def _covers(ranges: list[KeyRange], low: int, high: int) -> list[int]:
    """Which range each key of low..high falls in (exactly one, or the test fails)."""
    owners = []
    for key in range(low, high + 1):
        hits = [r.index for r in ranges if r.lower <= key < r.upper]
        assert len(hits) == 1, (key, hits)
        owners += hits
    return owners


def test_split_range_integers_contiguous_equal_width_every_key_once() -> None:
    ranges = split_range(3, 102, 4)
    assert [(r.lower, r.upper) for r in ranges] == [(3, 28), (28, 53), (53, 78), (78, 103)]
    assert [r.nulls for r in ranges] == [True, False, False, False]
    owners = _covers(ranges, 3, 102)
    assert [owners.count(i) for i in range(4)] == [25, 25, 25, 25]


def test_split_range_fewer_keys_than_partitions_and_single_key() -> None:
    assert len(split_range(1, 3, 8)) == 3
    assert [(r.lower, r.upper) for r in split_range(7, 7, 4)] == [(7, 8)]


def test_split_range_timestamps_and_dates_keep_their_type() -> None:
    tz = dt.timezone.utc
    low, high = dt.datetime(2024, 1, 1, tzinfo=tz), dt.datetime(2024, 1, 2, tzinfo=tz)
    ranges = split_range(low, high, 2)
    assert ranges[0].lower == low and ranges[-1].upper == high + dt.timedelta(microseconds=1)
    assert ranges[0].upper == ranges[1].lower == dt.datetime(2024, 1, 1, 12, tzinfo=tz)
    days = split_range(dt.date(2024, 1, 1), dt.date(2024, 1, 10), 3)
    assert [r.lower for r in days] == [
        dt.date(2024, 1, 1),
        dt.date(2024, 1, 4),
        dt.date(2024, 1, 7),
    ]
    assert days[-1].upper == dt.date(2024, 1, 11)


@pytest.mark.parametrize(
    ("low", "high", "n"), [(5, 1, 2), (1, 5, 0), ("a", "z", 2), (1.5, 2.5, 2), (True, True, 1)]
)
def test_split_range_refuses_what_it_cannot_split(low: object, high: object, n: int) -> None:
    with pytest.raises(InvalidInput):
        split_range(low, high, n)


def test_ranges_from_cuts() -> None:
    ranges = ranges_from_cuts([0, 10, 1000])
    assert [(r.lower, r.upper, r.nulls) for r in ranges] == [(0, 10, True), (10, 1000, False)]
    with pytest.raises(InvalidInput):
        ranges_from_cuts([0, 0, 5])


def test_write_part_hashes_what_the_store_holds_and_empty_parts_keep_the_schema(
    tmp_path: Path,
) -> None:
    store = LocalStore(tmp_path)
    schema = pa.schema([("id", pa.int64()), ("name", pa.large_string())])
    batch = pa.record_batch(
        [pa.array([1, 2, 3]), pa.array(["a", None, "c"], pa.large_string())], schema=schema
    )
    part = write_part(
        store, part_key("out", 0, 2), [batch], index=0, schema=schema, lower=1, upper=4
    )
    assert part.key == "out/part-00000-of-00002.parquet" and part.rows == 3
    body = (tmp_path / part.key).read_bytes()
    assert (part.sha256, part.bytes) == (hashlib.sha256(body).hexdigest(), len(body))
    empty = write_part(store, part_key("out", 1, 2), [], index=1, schema=schema)
    assert empty.rows == 0
    import pyarrow.parquet as pq

    assert pq.read_table(tmp_path / empty.key).schema == schema


def _part(index: int, key: str) -> PartResult:
    return PartResult(index=index, key=key, rows=index + 1, bytes=10, sha256="0" * 64)


def test_manifest_names_each_part_once_and_drops_parts_of_another_plan(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    for key in ("out/part-00000-of-00003.parquet", "out/part-00002-of-00003.parquet"):
        store.put_bytes(b"old plan", key)  # a crashed run with 3 parts
    store.put_bytes(b"keep", "out/notes.txt")
    keys = [part_key("out", i, 2) for i in range(2)]
    for key in keys:
        store.put_bytes(b"new", key)
    manifest = write_manifest(store, "out", [_part(1, keys[1]), _part(0, keys[0])], source="db://t")
    assert manifest.keys == keys and (manifest.rows, manifest.bytes) == (3, 20)
    assert sorted(o.key for o in store.list("out")) == sorted(
        [*keys, "out/notes.txt", manifest.key]
    )
    again = read_manifest(store, "out")
    assert again == manifest


@pytest.mark.parametrize("indexes", [[0, 0], [0, 2], [1]])
def test_manifest_refuses_a_lost_or_doubled_part(tmp_path: Path, indexes: list[int]) -> None:
    store = LocalStore(tmp_path)
    with pytest.raises(InvalidInput, match="manifest not written"):
        write_manifest(store, "out", [_part(i, f"out/p{i}") for i in indexes], source="x")
    assert not store.exists("out/_flowport_state/manifest.json")


def test_shard_listing_pages_by_keys_and_bytes_in_listing_order() -> None:
    infos = [ObjectInfo(f"k{i}", 10) for i in range(7)] + [ObjectInfo("dir/", 0, is_prefix=True)]
    assert shard_listing(infos, max_keys=3) == [["k0", "k1", "k2"], ["k3", "k4", "k5"], ["k6"]]
    assert shard_listing(infos, max_keys=100, max_bytes=25) == [
        ["k0", "k1"],
        ["k2", "k3"],
        ["k4", "k5"],
        ["k6"],
    ]
    with pytest.raises(InvalidInput):
        shard_listing(infos, max_keys=0)
