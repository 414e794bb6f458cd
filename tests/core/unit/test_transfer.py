"""flowport.transfer over LocalStore: file splitting, state after data, crash and rerun,
incremental by cursor and by key, verified store-to-store copies."""

from __future__ import annotations

import datetime as dt
import decimal
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from flowport.errors import InvalidInput
from flowport.store import LocalStore, Source, iter_chunks
from flowport.transfer import (
    Extract,
    StoreSink,
    StoreSource,
    copy_objects,
    decode_cursor,
    encode_cursor,
    transfer,
)


@dataclass
class TableSource:
    """An in-memory table with an integer cursor ``id``; ``fail_after`` batches simulates a
    crash mid-extraction."""

    rows: list[int]
    batch_rows: int = 7
    fail_after: int | None = None
    uri: str = "memory://numbers"

    def extract(self, since: Any = None) -> Extract:
        upper = max(self.rows, default=None)  # fixed when the extraction starts
        picked = [r for r in self.rows if (since is None or r > since) and r <= (upper or 0)]

        def batches() -> Iterator[pa.RecordBatch]:
            for n, i in enumerate(range(0, len(picked), self.batch_rows)):
                if self.fail_after is not None and n >= self.fail_after:
                    raise ConnectionResetError("source died")
                chunk = picked[i : i + self.batch_rows]
                yield pa.record_batch({"id": chunk, "v": [f"v{x}" for x in chunk]})

        return Extract(batches(), lower=since, upper=upper if picked else since)


def committed_ids(store: LocalStore, sink: StoreSink, name: str) -> list[int]:
    ids: list[int] = []
    for key in sink.files(name):
        ids += pq.read_table(Path(store.root) / key).column("id").to_pylist()
    return ids


def test_files_split_by_rows_and_state_names_them(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    sink = StoreSink(store, "out", max_file_rows=10)
    result = transfer(TableSource(list(range(1, 26))), sink, name="nums")
    assert result.rows == 25 and len(result.written) == 3
    assert result.target == store.url_for("out/x")[:-2]
    assert [pq.read_metadata(Path(store.root) / k).num_rows for k in sink.files("nums")] == [
        10,
        10,
        5,
    ]
    assert committed_ids(store, sink, "nums") == list(range(1, 26))
    assert sink.state("nums") == 25


def test_incremental_runs_move_only_new_rows(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    sink = StoreSink(store, "out", max_file_rows=10)
    source = TableSource(list(range(1, 11)))
    assert transfer(source, sink, name="nums").rows == 10
    assert transfer(source, sink, name="nums").rows == 0  # nothing new: nothing written
    source.rows += list(range(11, 16))
    second = transfer(source, sink, name="nums")
    assert (second.lower, second.upper, second.rows) == (10, 15, 5)
    assert committed_ids(store, sink, "nums") == list(range(1, 16))


def test_crash_mid_transfer_then_rerun_neither_loses_nor_duplicates(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    sink = StoreSink(store, "out", max_file_rows=7)
    source = TableSource(list(range(1, 11)))
    transfer(source, sink, name="nums")
    source.rows += list(range(11, 61))
    source.fail_after = 5  # two whole files written, then the source dies
    with pytest.raises(ConnectionResetError):
        transfer(source, sink, name="nums")
    assert sink.state("nums") == 10  # the mark did not move
    assert committed_ids(store, sink, "nums") == list(range(1, 11))
    # A different file size on the rerun: fewer, larger parts; the crashed run's extras go.
    sink.max_file_rows = 25
    source.fail_after = None
    rerun = transfer(source, sink, name="nums")
    assert rerun.rows == 50
    assert committed_ids(store, sink, "nums") == list(range(1, 61))
    on_disk = sorted(o.key for o in store.list("out") if "_flowport_state" not in o.key)
    assert on_disk == sorted(sink.files("nums"))


def test_store_source_reads_files_in_key_order_and_picks_up_new_ones(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    sink = StoreSink(store, "landing", max_file_rows=4)
    transfer(TableSource(list(range(1, 11))), sink, name="a")
    target = StoreSink(LocalStore(tmp_path / "copy"), "", format="jsonl")
    first = transfer(StoreSource(store, "landing"), target, name="mirror")
    assert first.rows == 10
    assert transfer(StoreSource(store, "landing"), target, name="mirror").rows == 0


def test_cursor_values_round_trip_through_state() -> None:
    values = [
        None,
        5,
        "k",
        dt.datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=dt.timezone.utc),
        dt.date(2026, 1, 2),
        decimal.Decimal("12.340"),
    ]
    for value in values:
        assert decode_cursor(encode_cursor(value)) == value
    with pytest.raises(InvalidInput, match="cannot be stored as a high-water mark"):
        encode_cursor(object())


def test_copy_objects_streams_and_verifies(tmp_path: Path) -> None:
    src, dst = LocalStore(tmp_path / "a"), LocalStore(tmp_path / "b")
    for i in range(5):
        src.put_bytes(bytes([i]) * (100_000 + i), f"d/{i}.bin")
    keys = [o.key for o in src.list("d")]
    result = copy_objects(src, dst, keys, concurrency=3)
    assert result.bytes == sum(100_000 + i for i in range(5)) and result.verified == "sha256"
    assert all(dst.get_bytes(k) == src.get_bytes(k) for k in keys)

    class Corrupting(LocalStore):
        def put_stream(self, source: Source, key: str, *, if_not_exists: bool = False) -> Any:
            list(iter_chunks(source))  # drain the copy, then store something else
            return super().put_stream(b"garbage", key)

    with pytest.raises(InvalidInput, match="does not match its source"):
        copy_objects(src, Corrupting(tmp_path / "c"), keys[:1])


@pytest.mark.usefixtures("prefect_server")
def test_transfer_tasks_in_a_flow(tmp_path: Path) -> None:
    from prefect import flow

    from flowport.transfer_tasks import copy_between, run_transfer

    store, mirror = LocalStore(tmp_path / "a"), LocalStore(tmp_path / "b")
    sink = StoreSink(store, "out", max_file_rows=6)

    @flow
    def pipeline() -> tuple[int, int]:
        moved = run_transfer(TableSource(list(range(1, 21))), sink, "nums")
        copied = copy_between(store, mirror, prefix="out")
        return moved.rows, len(copied.copied)

    assert pipeline() == (20, 5)  # 4 data files + the state object
    assert [mirror.get_bytes(k) for k in sink.files("nums")] == [
        store.get_bytes(k) for k in sink.files("nums")
    ]


def test_source_commit_runs_only_after_the_sink_stored_the_data(tmp_path: Path) -> None:
    commits: list[str] = []

    @dataclass
    class Batches:
        uri: str = "queue://topic"

        def extract(self, since: Any = None) -> Extract:
            batch = pa.record_batch({"id": [1, 2, 3]})
            return Extract([batch], label="topic-p0-0-2", commit=lambda: commits.append("c"))

    class Broken(LocalStore):
        def put_stream(self, source: Source, key: str, *, if_not_exists: bool = False) -> Any:
            raise ConnectionResetError("store down")

    with pytest.raises(ConnectionResetError):
        transfer(Batches(), StoreSink(Broken(tmp_path / "x"), "q"), name="t")
    assert commits == []
    sink = StoreSink(LocalStore(tmp_path / "y"), "q")
    first = transfer(Batches(), sink, name="t")
    again = transfer(Batches(), sink, name="t")  # the same batch read twice: same object
    assert commits == ["c", "c"]
    assert first.written == again.written and len(sink.files("t")) == 1
    assert sink.files("t")[0] == "q/t-topic-p0-0-2-00000.parquet"
