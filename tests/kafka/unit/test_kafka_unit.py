"""Offline tests: block validation and pickling, serializers, error mapping, produce accounting
and batch conversion against small stand-ins for kafka-python's producer and consumer."""

from __future__ import annotations

import pickle
from types import SimpleNamespace
from typing import Any

import cloudpickle
import pytest
from kafka import TopicPartition
from kafka import errors as kerr
from kafka.future import Future
from pydantic import SecretStr

from flowport.errors import (
    AuthError,
    ConfigError,
    Conflict,
    DeliveryError,
    InvalidInput,
    NotFound,
    TransientError,
)
from flowport.plugins import get_connector
from flowport_kafka import (
    Batch,
    KafkaConnection,
    Message,
    Record,
    commit,
    consume,
    errors,
    produce,
    queue,
)
from flowport_kafka.blocks import KNOWN_SETTINGS

# --------------------------------------------------------------------------- block


def test_block_builds_configs_per_client_kind() -> None:
    block = KafkaConnection(
        bootstrap_servers=["a:9092", "b:9092"],
        extra_settings={"linger.ms": 7, "max_poll_records": 10, "compression_type": "gzip"},
    )
    assert block.bootstrap_servers == "a:9092,b:9092"
    producer = block.client_config("producer")
    consumer = block.client_config("consumer", group_id="g")
    admin = block.client_config("admin")
    assert producer["linger_ms"] == 7 and producer["acks"] == "all"
    assert producer["enable_idempotence"] is True
    assert "max_poll_records" not in producer and consumer["max_poll_records"] == 10
    assert consumer["group_id"] == "g" and "linger_ms" not in consumer
    assert admin["bootstrap_servers"] == ["a:9092", "b:9092"]
    for kind, cfg in (("producer", producer), ("consumer", consumer), ("admin", admin)):
        assert set(cfg) <= KNOWN_SETTINGS[kind]  # type: ignore[index]


def test_typo_in_extra_settings_is_a_config_error_with_a_hint() -> None:
    with pytest.raises(ConfigError, match=r"lingr_ms.*did you mean linger_ms"):
        KafkaConnection(bootstrap_servers="a:1", extra_settings={"lingr_ms": 5})


def test_reserved_settings_point_to_the_right_place() -> None:
    with pytest.raises(ConfigError, match="auto_commit argument"):
        KafkaConnection(bootstrap_servers="a:1", extra_settings={"enable.auto.commit": True})
    with pytest.raises(ConfigError, match="sasl_password"):
        KafkaConnection(bootstrap_servers="a:1", extra_settings={"sasl_plain_password": "x"})


def test_sasl_password_stays_secret_and_reaches_the_client() -> None:
    block = KafkaConnection(
        bootstrap_servers="a:1",
        security_protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username="bob",
        sasl_password=SecretStr("hunter2-very-secret"),
    )
    assert "hunter2" not in repr(block)
    cfg = block.client_config("producer")
    assert cfg["sasl_plain_password"] == "hunter2-very-secret"
    assert cfg["sasl_mechanism"] == "SCRAM-SHA-512"


def test_block_pickles_without_its_clients() -> None:
    block = KafkaConnection(bootstrap_servers="a:1")
    sentinel = object()
    assert block._client("producer", lambda: sentinel) is sentinel
    for dumps in (pickle.dumps, cloudpickle.dumps):
        copy = pickle.loads(dumps(block))
        assert copy.bootstrap_servers == "a:1"
        assert copy._clients == {}
        made = copy._client("producer", lambda: "fresh")
        assert made == "fresh"


def test_replace_makes_an_independent_block() -> None:
    block = KafkaConnection(bootstrap_servers="a:1", sasl_password=SecretStr("pw-1234"))
    block._client("admin", lambda: "cached")
    quick = block.replace(request_timeout=5)
    assert quick.request_timeout == 5 and quick.bootstrap_servers == "a:1"
    assert quick.sasl_password is not None
    assert quick.sasl_password.get_secret_value() == "pw-1234"
    assert quick._client("admin", lambda: "own") == "own"
    assert block._client("admin", lambda: "other") == "cached"


def test_tasks_pickle() -> None:
    for task in (produce, consume, commit):
        clone = cloudpickle.loads(cloudpickle.dumps(task))
        assert clone.name == task.name


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("exc", "transient"),
    [
        (kerr.KafkaTimeoutError("Unable to bootstrap"), True),
        (kerr.NotLeaderForPartitionError(), True),
        (kerr.RequestTimedOutError(), True),
        (kerr.CoordinatorNotAvailableError(), True),
        (kerr.KafkaConnectionError("reset"), True),
        (ConnectionResetError(), True),
        (kerr.UnknownTopicOrPartitionError(), False),
        (kerr.TopicAuthorizationFailedError(), False),
        (kerr.SaslAuthenticationFailedError(), False),
        (kerr.MessageSizeTooLargeError(), False),
        (kerr.KafkaConfigurationError(), False),
        (ValueError("bad"), False),
    ],
)
def test_is_transient(exc: BaseException, transient: bool) -> None:
    assert errors.is_transient(exc) is transient


def test_translate_names_target_brokers_and_cause() -> None:
    err = errors.translate(kerr.UnknownTopicOrPartitionError(), "topic 'x'", "b:1")
    assert isinstance(err, NotFound) and "topic 'x'" in str(err) and "b:1" in str(err)
    assert isinstance(errors.translate(kerr.TopicAuthorizationFailedError(), "t", "b"), AuthError)
    too_big = errors.translate(kerr.MessageSizeTooLargeError(), "t", "b")
    assert isinstance(too_big, InvalidInput) and "max.message.bytes" in str(too_big)
    assert isinstance(errors.translate(kerr.CommitFailedError(), "g", "b"), Conflict)
    assert isinstance(errors.translate(kerr.RequestTimedOutError(), "t", "b"), TransientError)


# --------------------------------------------------------------------------- serializers


def test_serializers_and_deserializers_round_trip() -> None:
    assert queue.serializer("json")({"a": 1}) == b'{"a":1}'
    assert queue.serializer("str")("é") == "é".encode()
    assert queue.serializer("bytes")(bytearray(b"x")) == b"x"
    assert queue.serializer(lambda v: v.upper())(b"x") == b"X"
    assert queue.deserializer("bytes") is None  # identity, no per-message call
    assert queue.deserializer("json")(b'{"a":1}') == {"a": 1}  # type: ignore[misc]
    assert queue.deserializer("str")(None) is None  # type: ignore[misc]
    with pytest.raises(TypeError):
        queue.serializer("bytes")("text")
    with pytest.raises(InvalidInput):
        queue.serializer("yaml")  # type: ignore[arg-type]


# --------------------------------------------------------------------------- produce


class FakeProducer:
    """Acknowledges or fails each send the way kafka-python's futures do."""

    def __init__(self, fail: set[int] | None = None, too_large: set[bytes] | None = None):
        self.fail = fail or set()
        self.too_large = too_large or set()
        self.sent: list[dict[str, Any]] = []
        self.pending: list[tuple[Future, int]] = []

    def send(
        self,
        topic: str,
        value: Any,
        key: Any = None,
        headers: Any = None,
        partition: Any = None,
        timestamp_ms: Any = None,
    ) -> Future:
        if value in self.too_large:
            raise kerr.MessageSizeTooLargeError("too big")
        self.sent.append(
            {
                "topic": topic,
                "value": value,
                "key": key,
                "headers": headers,
                "partition": partition,
                "timestamp_ms": timestamp_ms,
            }
        )
        future = Future()
        self.pending.append((future, len(self.sent) - 1))
        return future

    def flush(self, timeout: float | None = None) -> None:
        for future, n in self.pending:
            if n in self.fail:
                future.failure(kerr.KafkaTimeoutError("expired"))
            else:
                future.success(SimpleNamespace(partition=n % 2, offset=n // 2))
        self.pending = []


def test_produce_reports_every_delivery() -> None:
    producer = FakeProducer()
    records = [Record({"n": 1}, key="k", headers={"h": "v"}, partition=1, timestamp=5), {"n": 2}]
    result = queue.produce(
        producer, "t", records, brokers="b:1", key_serializer="str", value_serializer="json"
    )
    assert [tuple(d) for d in result] == [(0, 0, 0), (1, 1, 0)]
    assert producer.sent[0] == {
        "topic": "t",
        "value": b'{"n":1}',
        "key": b"k",
        "headers": [("h", b"v")],
        "partition": 1,
        "timestamp_ms": 5,
    }
    assert result.bytes == len(b'{"n":1}') + len(b'{"n":2}')
    assert result.count == 2 and result.last_offsets() == {0: 0, 1: 0}


def test_produce_failed_deliveries_raise_naming_which() -> None:
    producer = FakeProducer(fail={1, 3})
    with pytest.raises(DeliveryError) as info:
        queue.produce(producer, "t", [b"a", b"b", b"c", b"d", b"e"], brokers="b:1")
    err = info.value
    assert "2 of 5 messages were not delivered" in str(err)
    assert "#1" in str(err) and "#3" in str(err) and "b:1" in str(err)
    assert sorted(err.failed) == [1, 3]  # type: ignore[attr-defined]
    assert err.result.offsets.tolist() == [0, -1, 1, -1, 2]  # type: ignore[attr-defined]


def test_produce_serialization_and_size_errors_are_reported_not_dropped() -> None:
    producer = FakeProducer(too_large={b"c"})
    with pytest.raises(DeliveryError) as info:
        queue.produce(producer, "t", [b"a", "not bytes", b"c", b"d"], brokers="b:1")
    failed = info.value.failed  # type: ignore[attr-defined]
    assert sorted(failed) == [1, 2]
    assert "cannot serialize" in failed[1] and "MessageSizeTooLarge" in failed[2]
    assert [s["value"] for s in producer.sent] == [b"a", b"d"]


def test_produce_stops_when_the_producer_is_stuck() -> None:
    class Stuck(FakeProducer):
        def send(self, *a: Any, **kw: Any) -> Future:
            if len(self.sent) == 2:
                raise kerr.KafkaTimeoutError("metadata not available after 60000 ms")
            return super().send(*a, **kw)

    with pytest.raises(DeliveryError, match="from #3 on were not sent") as info:
        queue.produce(Stuck(), "t", iter([b"a", b"b", b"c", b"d", b"e"]), brokers="b:1")
    assert sorted(info.value.failed) == [2]  # type: ignore[attr-defined]


# --------------------------------------------------------------------------- consume


def _record(
    topic: str,
    partition: int,
    offset: int,
    value: bytes,
    key: bytes | None = None,
    headers: list[tuple[str, bytes]] | None = None,
) -> Any:
    return SimpleNamespace(
        topic=topic,
        partition=partition,
        offset=offset,
        key=key,
        value=value,
        headers=headers or [],
        timestamp=1000 + offset,
        serialized_value_size=len(value),
    )


class FakeConsumer:
    """Serves a fixed set of records once; positions and ends follow them."""

    def __init__(self, records: dict[TopicPartition, list[Any]]):
        self.records = records
        self.positions = {tp: 0 for tp in records}
        self.committed: list[dict[TopicPartition, Any]] = []
        self.closed_with: bool | None = None

    def partitions_for_topic(self, topic: str) -> set[int]:
        return {tp.partition for tp in self.records if tp.topic == topic}

    def subscribe(self, topics: list[str]) -> None:
        self.topics = topics

    def assignment(self) -> set[TopicPartition]:
        return set(self.records)

    def end_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: len(self.records[tp]) for tp in tps}

    def position(self, tp: TopicPartition) -> int:
        return self.positions[tp]

    def poll(
        self, timeout_ms: int = 0, max_records: int | None = None, update_offsets: bool = True
    ) -> dict[TopicPartition, list[Any]]:
        out: dict[TopicPartition, list[Any]] = {}
        budget = max_records or 10**9
        for tp, recs in self.records.items():
            chunk = recs[self.positions[tp] : self.positions[tp] + budget]
            if chunk:
                out[tp] = chunk
                self.positions[tp] += len(chunk)
                budget -= len(chunk)
            if budget <= 0:
                break
        return out

    def commit(self, offsets: dict[TopicPartition, Any]) -> None:
        self.committed.append(offsets)

    def close(self, autocommit: bool = True) -> None:
        self.closed_with = autocommit


def test_reader_reads_to_end_and_reports_next_offsets() -> None:
    tp0, tp1 = TopicPartition("t", 0), TopicPartition("t", 1)
    fake = FakeConsumer(
        {
            tp0: [_record("t", 0, i, b'{"i":%d}' % i, b"k", [("h", b"v")]) for i in range(3)],
            tp1: [_record("t", 1, i, b'{"i":%d}' % (10 + i)) for i in range(2)],
        }
    )
    reader = queue.Reader(fake, ["t"], "g", "str", "json")  # type: ignore[arg-type]
    reader.join(1)
    batch = reader.read(100, 5.0, stop_at_end=True)
    assert len(batch) == 5
    assert batch.offsets == {("t", 0): 3, ("t", 1): 2}
    first = batch.messages[0]
    assert first == Message("t", 0, 0, "k", {"i": 0}, (("h", b"v"),), 1000)
    assert first.header("h") == b"v" and first.header("nope") is None
    assert fake.committed == []  # reading commits nothing
    reader.close()
    assert fake.closed_with is False


def test_reader_respects_max_messages() -> None:
    tp0 = TopicPartition("t", 0)
    fake = FakeConsumer({tp0: [_record("t", 0, i, b"x") for i in range(10)]})
    reader = queue.Reader(fake, ["t"], "g")  # type: ignore[arg-type]
    reader.join(1)
    batch = reader.read(4, 5.0, stop_at_end=True)
    assert [m.offset for m in batch] == [0, 1, 2, 3] and batch.offsets == {("t", 0): 4}


def test_undeserializable_message_names_its_position() -> None:
    tp0 = TopicPartition("t", 0)
    fake = FakeConsumer({tp0: [_record("t", 0, 0, b"not json")]})
    reader = queue.Reader(fake, ["t"], "g", value_deserializer="json")  # type: ignore[arg-type]
    reader.join(1)
    with pytest.raises(InvalidInput, match="partition 0 offset 0"):
        reader.read(10, 1.0, stop_at_end=True)


def test_commit_offsets_commits_exactly_the_batch_and_closes() -> None:
    fake = FakeConsumer({})
    queue.commit_offsets(fake, {("t", 0): 3, ("t", 1): 2})  # type: ignore[arg-type]
    (committed,) = fake.committed
    assert {tp: om.offset for tp, om in committed.items()} == {
        TopicPartition("t", 0): 3,
        TopicPartition("t", 1): 2,
    }
    assert fake.closed_with is False


def test_commit_task_needs_a_group() -> None:
    block = KafkaConnection(bootstrap_servers="a:1")
    with pytest.raises(InvalidInput, match="consumer group"):
        commit.fn(block, Batch(None, [], {("t", 0): 1}))
    assert commit.fn(block, Batch("g", [], {})) == {}  # empty batch: nothing to do


def test_batches_pickle() -> None:
    batch = Batch("g", [Message("t", 0, 1, b"k", b"v", (("h", b"x"),), 5)], {("t", 0): 2}, 1)
    again = cloudpickle.loads(cloudpickle.dumps(batch))
    assert again == batch


# --------------------------------------------------------------------------- plugin


def test_connector_is_discovered_by_entry_point() -> None:
    connector = get_connector("kafka")
    assert connector.distribution == "flowport-kafka"
    assert connector.check_block is KafkaConnection
    assert {
        "produce",
        "consume",
        "commit",
        "consume_into",
        "await_message",
        "create_topics",
        "delete_topics",
        "list_topics",
        "describe_topics",
        "consumer_lag",
        "wait_for_lag_below",
    } <= set(connector.tasks)


def test_block_is_registered_as_a_prefect_collection() -> None:
    from importlib.metadata import entry_points

    names = {ep.value for ep in entry_points(group="prefect.collections")}
    assert "flowport_kafka.blocks" in names
    assert KafkaConnection.get_block_type_slug() == "flowport-kafka-connection"
