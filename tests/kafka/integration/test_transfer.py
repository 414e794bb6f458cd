"""KafkaSource and consume_to_store on the real broker, into a LocalStore: columns and types,
deterministic labels, the pinned batch (a rerun reads the same ranges whatever arrived since),
members, JSON values (given and inferred schemas) and bad input."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from kafka import KafkaAdminClient, TopicPartition

from flowport.errors import InvalidInput
from flowport.store import LocalStore
from flowport.transfer import Extract, StoreSink, transfer
from flowport_kafka import KafkaConnection, KafkaSource, Record, consume_to_store, produce

T0 = 1_700_000_000_000


def _records(n: int, partitions: int, start: int = 0) -> list[Record]:
    return [
        Record(
            json.dumps({"id": i, "amount": i / 4, "at": "2024-06-01T12:00:00"}).encode(),
            key=b"k%d" % i,
            partition=i % partitions,
            timestamp=T0 + i,
            headers=[("trace", b"t%d" % i)] if i % 2 else None,
        )
        for i in range(start, start + n)
    ]


def _table(extract: Extract) -> pa.Table:
    return pa.Table.from_batches(list(extract.batches))


def _committed(admin: KafkaAdminClient, group: str) -> dict[int, tuple[int, str]]:
    found = admin.list_group_offsets({group: None}).get(group, {})
    return {tp.partition: (m.offset, m.metadata) for tp, m in found.items()}


def test_extract_columns_label_and_commit(
    kafka_block: KafkaConnection,
    make_topic: Callable[..., str],
    group: str,
    raw_admin: KafkaAdminClient,
) -> None:
    topic = make_topic(3)
    produce.fn(kafka_block, topic, _records(30, 3))
    source = KafkaSource(kafka_block, topic, group, max_messages=25)
    assert source.uri == f"kafka://{kafka_block.bootstrap_servers}/{topic}"
    assert "secret" not in source.uri

    first = source.extract()
    table = _table(first)
    # filled partition by partition: p0 (10), p1 (10), then 5 of p2
    assert first.label == f"{topic}-p0-0-9_p1-0-9_p2-0-4"
    assert table.num_rows == 25
    assert table.schema.names == [
        "topic",
        "partition",
        "offset",
        "timestamp",
        "key",
        "value",
        "headers",
    ]
    assert table.schema.field("timestamp").type == pa.timestamp("ms", tz="UTC")
    assert table.schema.field("value").type == pa.binary()
    row = table.slice(11, 1).to_pylist()[0]  # p1, offset 1: message 4
    assert row["topic"] == topic and (row["partition"], row["offset"]) == (1, 1)
    assert row["key"] == b"k4" and json.loads(row["value"])["id"] == 4
    assert row["timestamp"] == dt.datetime.fromtimestamp((T0 + 4) / 1000, dt.timezone.utc)
    assert row["headers"] == []
    assert table.slice(12, 1).to_pylist()[0]["headers"] == [{"key": "trace", "value": b"t7"}]

    # not committed: the same batch again
    assert source.extract().label == first.label
    assert first.commit is not None
    first.commit()
    assert _committed(raw_admin, group) == {0: (10, ""), 1: (10, ""), 2: (5, "")}
    second = source.extract()
    assert second.label == f"{topic}-p2-5-9" and _table(second).num_rows == 5
    assert second.commit is not None
    second.commit()
    empty = source.extract()
    assert list(empty.batches) == [] and empty.commit is None and source.drained
    assert _committed(raw_admin, group)[2] == (10, "")


def test_rerun_reads_the_pinned_ranges_whatever_arrived_since(
    kafka_block: KafkaConnection,
    make_topic: Callable[..., str],
    group: str,
    raw_admin: KafkaAdminClient,
) -> None:
    topic = make_topic(2)
    produce.fn(kafka_block, topic, _records(6, 2))
    source = KafkaSource(kafka_block, topic, group, max_messages=100)
    crashed = source.extract()  # never committed: a crash after the sink stored it
    assert crashed.label == f"{topic}-p0-0-2_p1-0-2"
    assert _committed(raw_admin, group) == {
        0: (0, "flowport-batch-end=3"),
        1: (0, "flowport-batch-end=3"),
    }
    produce.fn(kafka_block, topic, _records(10, 2, start=6))  # more arrive meanwhile
    # a rerun, even with another max_messages, reads exactly the crashed run's ranges
    rerun = KafkaSource(kafka_block, topic, group, max_messages=1).extract()
    assert rerun.label == crashed.label
    assert _table(rerun).column("offset").to_pylist() == [0, 1, 2, 0, 1, 2]
    assert rerun.commit is not None
    rerun.commit()
    after = source.extract()
    assert after.label == f"{topic}-p0-3-7_p1-3-7"


def test_members_split_partitions_and_commit_their_own(
    kafka_block: KafkaConnection, make_topic: Callable[..., str], group: str
) -> None:
    topic = make_topic(6)
    produce.fn(kafka_block, topic, _records(60, 6))
    seen: list[tuple[int, int]] = []
    for member in range(2):
        extract = KafkaSource(kafka_block, topic, group, member=member, members=2).extract()
        table = _table(extract)
        parts = sorted(set(table.column("partition").to_pylist()))
        assert parts == [member, member + 2, member + 4]
        assert extract.label == "_".join(
            f"{topic}-p{p}-0-9" if i == 0 else f"p{p}-0-9" for i, p in enumerate(parts)
        )
        seen += zip(
            table.column("partition").to_pylist(), table.column("offset").to_pylist(), strict=True
        )
        assert extract.commit is not None
        extract.commit()
    assert sorted(seen) == [(p, o) for p in range(6) for o in range(10)]


def test_json_values_with_a_given_schema_and_inferred(
    kafka_block: KafkaConnection, make_topic: Callable[..., str], group: str
) -> None:
    topic = make_topic(1)
    produce.fn(kafka_block, topic, _records(5, 1))
    produce.fn(
        kafka_block,
        topic,
        [Record(b'{\n  "id": 5,\n  "extra": true\n}'), Record(None, key=b"gone")],
    )
    schema = pa.schema([("id", pa.int64()), ("amount", pa.float64()), ("at", pa.timestamp("s"))])
    given = KafkaSource(kafka_block, topic, group, value_format="json", schema=schema)
    table = _table(given.extract())
    assert table.schema.names == [
        "topic",
        "partition",
        "offset",
        "timestamp",
        "key",
        "id",
        "amount",
        "at",
        "headers",
    ]
    assert table.schema.field("at").type == pa.timestamp("s")
    assert table.column("id").to_pylist() == [0, 1, 2, 3, 4, 5, None]  # None: a tombstone
    assert table.column("amount").to_pylist()[:5] == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert table.column("at").to_pylist()[0] == dt.datetime(2024, 6, 1, 12)

    inferred = KafkaSource(kafka_block, topic, f"{group}-2", value_format="json", max_messages=5)
    first = inferred.extract()
    table = _table(first)
    assert table.schema.field("id").type == pa.int64()
    assert table.schema.field("amount").type == pa.float64()
    assert first.commit is not None
    first.commit()
    # the next batch brings a field the inferred schema does not have: a clear error
    with pytest.raises(InvalidInput, match=r"offset 5: field\(s\) \['extra'\] not in the schema"):
        inferred.extract()


def test_bad_json_and_clashing_fields_are_named(
    kafka_block: KafkaConnection, make_topic: Callable[..., str], group: str
) -> None:
    topic = make_topic(1)
    produce.fn(kafka_block, topic, [b'{"id": 1}', b"not json", b'{"id": 3}'])
    source = KafkaSource(kafka_block, topic, group, value_format="json")
    with pytest.raises(InvalidInput, match=rf"{topic}' partition 0 offset 1: value is not JSON"):
        source.extract()
    with pytest.raises(InvalidInput, match=r"\['offset'\] .* clash"):
        KafkaSource(
            kafka_block,
            topic,
            group,
            value_format="json",
            schema=pa.schema([("offset", pa.int64())]),
        )
    clash = make_topic(1)
    produce.fn(kafka_block, clash, [b'{"partition": 1}'])
    with pytest.raises(InvalidInput, match=r"\['partition'\] .* clash"):
        KafkaSource(kafka_block, clash, group, value_format="json").extract()


def test_consume_to_store_one_file_per_batch_until_the_end_snapshot(
    kafka_block: KafkaConnection, make_topic: Callable[..., str], group: str, tmp_path: Path
) -> None:
    topic = make_topic(3)
    produce.fn(kafka_block, topic, _records(250, 3))
    store = LocalStore(tmp_path)
    result = consume_to_store.fn(kafka_block, topic, group, store, "raw", max_messages=100)
    assert (result.messages, result.batches, len(result.files), result.stopped_by) == (
        250,
        3,
        3,
        "end",
    )
    assert result.committed == {(topic, 0): 84, (topic, 1): 83, (topic, 2): 83}
    sink = StoreSink(store, "raw")
    assert [store.url_for(k) for k in sink.files(topic)] == result.files
    rows = [
        (r["partition"], r["offset"], r["key"])
        for k in sink.files(topic)
        for r in pq.read_table(tmp_path / k).to_pylist()
    ]
    assert len(rows) == len(set(rows)) == 250
    assert {key for _, _, key in rows} == {b"k%d" % i for i in range(250)}
    assert [Path(k).name for k in sink.files(topic)] == [
        f"{topic}-{topic}-p0-0-83_p1-0-15-00000.parquet",
        f"{topic}-{topic}-p1-16-82_p2-0-32-00000.parquet",
        f"{topic}-{topic}-p2-33-82-00000.parquet",
    ]
    # nothing new: no batch, no file, nothing committed
    again = consume_to_store.fn(kafka_block, topic, group, store, "raw", max_messages=100)
    assert (again.messages, again.batches, again.files) == (0, 0, [])
    # max_batches stops early; the next call continues
    produce.fn(kafka_block, topic, _records(30, 3, start=250))
    part = consume_to_store.fn(
        kafka_block, topic, group, store, "raw", max_messages=10, max_batches=2
    )
    assert (part.messages, part.stopped_by) == (20, "max_batches")
    rest = consume_to_store.fn(kafka_block, topic, group, store, "raw", max_messages=10)
    assert (rest.messages, rest.batches) == (10, 1)


def test_a_sink_failing_after_the_upload_rewrites_the_same_keys_on_rerun(
    kafka_block: KafkaConnection, make_topic: Callable[..., str], group: str, tmp_path: Path
) -> None:
    topic = make_topic(3)
    produce.fn(kafka_block, topic, _records(90, 3))
    store = LocalStore(tmp_path)
    sink = StoreSink(store, "raw")

    class FailingAfterLoad:
        uri = sink.uri

        def state(self, name: str) -> Any:
            return sink.state(name)

        def load(self, extract: Extract, name: str) -> Any:
            sink.load(extract, name)
            raise ConnectionResetError("worker died after the upload")

    source = KafkaSource(kafka_block, topic, group, max_messages=50)
    with pytest.raises(ConnectionResetError):
        transfer(source, FailingAfterLoad(), name="orders")
    crashed = sorted(o.key for o in store.list("raw/orders-"))
    produce.fn(kafka_block, topic, _records(30, 3, start=90))  # more arrive meanwhile
    transfer(KafkaSource(kafka_block, topic, group, max_messages=50), sink, name="orders")
    assert sorted(sink.files("orders")) == crashed  # the same keys, overwritten
    rows = [
        (r["partition"], r["offset"])
        for k in sink.files("orders")
        for r in pq.read_table(tmp_path / k).to_pylist()
    ]
    assert len(rows) == len(set(rows)) == 50
    consumer_group_offsets = KafkaAdminClient(bootstrap_servers=kafka_block.bootstrap_servers)
    try:
        got = consumer_group_offsets.list_group_offsets({group: None})[group]
        assert got[TopicPartition(topic, 0)].offset == 30
        assert got[TopicPartition(topic, 1)].offset == 20
    finally:
        consumer_group_offsets.close()
