"""The operations: plain Python over kafka-python, no Prefect imports.

Delivery guarantees live here:

* :func:`produce` sends every message, waits for every acknowledgement and reports each one;
  any message that was not acknowledged ends in a :class:`~flowport.errors.DeliveryError`.
* :class:`Reader` reads batches without committing; :func:`commit_offsets` commits exactly the
  offsets of a batch. Consumers live for one call: nothing is committed behind your back.
"""

from __future__ import annotations

import contextlib
import json
import time
from array import array
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, NamedTuple

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka import errors as kerr
from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient, OffsetSpec
from kafka.record.default_records import DefaultRecordBatchBuilder
from kafka.record.util import size_of_varint
from kafka.structs import MemberState, OffsetAndMetadata

from flowport.errors import (
    Conflict,
    DeliveryError,
    InvalidInput,
    NotFound,
    TransientError,
)
from flowport.secrets import redact

SYSTEM = "Kafka"

SerializerSpec = Literal["bytes", "str", "json"] | Callable[[Any], bytes | None]
DeserializerSpec = Literal["bytes", "str", "json"] | Callable[[bytes], Any]
Headers = Mapping[str, bytes | str] | Sequence[tuple[str, bytes | str]]

# --------------------------------------------------------------------------- data types


@dataclass(frozen=True)
class Record:
    """One message to produce. Plain values given to ``produce`` become ``Record(value)``."""

    value: Any
    key: Any = None
    headers: Headers | None = None
    partition: int | None = None
    timestamp: int | datetime | None = None
    """Milliseconds since the epoch (or an aware ``datetime``); None lets the producer stamp it."""


class Message(NamedTuple):
    """One consumed message, key and value deserialized, headers as ``(name, bytes)`` pairs."""

    topic: str
    partition: int
    offset: int
    key: Any
    value: Any
    headers: tuple[tuple[str, bytes], ...]
    timestamp: int

    def header(self, name: str) -> bytes | None:
        """The first header called ``name``, or None."""
        for key, value in self.headers:
            if key == name:
                return value
        return None


class Delivery(NamedTuple):
    """Where one produced message landed (``message`` is its position in the input)."""

    message: int
    partition: int
    offset: int


@dataclass
class ProduceResult:
    """Per-message delivery metadata of one ``produce`` call, stored compactly.

    ``result[i]`` is the :class:`Delivery` of the i-th message (partition -1 / offset -1 when
    it was not delivered, which only a :class:`DeliveryError`'s ``result`` can show).
    """

    topic: str
    partitions: array = field(default_factory=lambda: array("i"))  # type: ignore[type-arg]
    offsets: array = field(default_factory=lambda: array("q"))  # type: ignore[type-arg]
    bytes: int = 0
    seconds: float = 0.0

    def __len__(self) -> int:
        return len(self.offsets)

    def __getitem__(self, index: int) -> Delivery:
        if index < 0:
            index += len(self)
        return Delivery(index, self.partitions[index], self.offsets[index])

    def __iter__(self) -> Iterator[Delivery]:
        for i, (p, o) in enumerate(zip(self.partitions, self.offsets, strict=True)):
            yield Delivery(i, p, o)

    @property
    def count(self) -> int:
        """Messages delivered."""
        return sum(1 for o in self.offsets if o >= 0)

    def last_offsets(self) -> dict[int, int]:
        """The highest offset written per partition."""
        out: dict[int, int] = {}
        for p, o in zip(self.partitions, self.offsets, strict=True):
            if o > out.get(p, -1):
                out[p] = o
        return out


@dataclass
class Batch:
    """Messages read by ``consume`` and the offsets that ``commit(batch)`` will commit.

    ``offsets[(topic, partition)]`` is the next offset to read: the last message's offset + 1.
    """

    group_id: str | None
    messages: list[Message]
    offsets: dict[tuple[str, int], int]
    bytes: int = 0

    def __len__(self) -> int:
        return len(self.messages)

    def __iter__(self) -> Iterator[Message]:
        return iter(self.messages)

    def __bool__(self) -> bool:
        return bool(self.messages)

    def values(self) -> list[Any]:
        """Just the values, in read order."""
        return [m.value for m in self.messages]


@dataclass
class ConsumeIntoResult:
    """What ``consume_into`` moved: counts, committed offsets and the sink's non-None results."""

    messages: int = 0
    bytes: int = 0
    batches: int = 0
    seconds: float = 0.0
    committed: dict[tuple[str, int], int] = field(default_factory=dict)
    sink_results: list[Any] = field(default_factory=list)
    stopped_by: str = ""


class PartitionLag(NamedTuple):
    """Lag of one partition for one consumer group."""

    topic: str
    partition: int
    committed: int | None
    end: int
    lag: int


@dataclass
class TopicInfo:
    """What ``describe_topics`` reports for one topic."""

    name: str
    partitions: list[dict[str, Any]]
    configs: dict[str, str]
    internal: bool = False

    @property
    def partition_count(self) -> int:
        return len(self.partitions)


# --------------------------------------------------------------------------- serializers


def _ser_bytes(value: Any) -> bytes | None:
    if value is None or isinstance(value, bytes):
        return value
    if isinstance(value, bytearray | memoryview):
        return bytes(value)
    raise TypeError(f"expected bytes, got {type(value).__name__} (choose serializer 'str'/'json')")


def _ser_str(value: Any) -> bytes | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise TypeError(f"expected str, got {type(value).__name__}")
    return value.encode()


def _ser_json(value: Any) -> bytes | None:
    return None if value is None else json.dumps(value, separators=(",", ":")).encode()


def _de_str(data: bytes | None) -> Any:
    return None if data is None else data.decode()


def _de_json(data: bytes | None) -> Any:
    return None if data is None else json.loads(data)


_SERIALIZERS: dict[str, Callable[[Any], bytes | None]] = {
    "bytes": _ser_bytes,
    "str": _ser_str,
    "json": _ser_json,
}
_DESERIALIZERS: dict[str, Callable[[bytes | None], Any] | None] = {
    "bytes": None,
    "str": _de_str,
    "json": _de_json,  # None: pass bytes through untouched
}


def serializer(spec: SerializerSpec) -> Callable[[Any], bytes | None]:
    """``'bytes'``, ``'str'``, ``'json'`` or your own callable ``value -> bytes``."""
    if callable(spec):
        return spec
    try:
        return _SERIALIZERS[spec]
    except KeyError:
        raise InvalidInput(
            f"unknown Kafka serializer {spec!r} (bytes, str, json or a callable)", system=SYSTEM
        ) from None


def deserializer(spec: DeserializerSpec) -> Callable[[bytes | None], Any] | None:
    """``'bytes'`` (None: identity), ``'str'``, ``'json'`` or a callable ``bytes -> value``."""
    if callable(spec):
        return lambda data: None if data is None else spec(data)
    try:
        return _DESERIALIZERS[spec]
    except KeyError:
        raise InvalidInput(
            f"unknown Kafka deserializer {spec!r} (bytes, str, json or a callable)", system=SYSTEM
        ) from None


def _headers(headers: Headers | None) -> list[tuple[str, bytes]] | None:
    if not headers:
        return None
    items = headers.items() if isinstance(headers, Mapping) else headers
    return [(str(k), v.encode() if isinstance(v, str) else bytes(v)) for k, v in items]


def _timestamp_ms(ts: int | datetime | None) -> int | None:
    if ts is None or isinstance(ts, int):
        return ts
    return int(ts.timestamp() * 1000)


# --------------------------------------------------------------------------- topics


def missing_topics(admin: KafkaAdminClient, topics: Sequence[str]) -> list[str]:
    """The topics of ``topics`` the cluster does not have (one metadata request)."""
    found = admin.describe_topics(list(topics))
    missing = []
    for info in found:
        code = info.get("error_code", 0)
        if code == kerr.UnknownTopicOrPartitionError.errno:
            missing.append(info["name"])
        elif code:
            raise kerr.for_code(code)(f"topic {info['name']}")
    return missing


def require_topics(admin: KafkaAdminClient, topics: Sequence[str], brokers: str) -> None:
    """Raise :class:`NotFound` naming the topics and brokers when any topic is missing."""
    missing = missing_topics(admin, topics)
    if missing:
        names = ", ".join(repr(t) for t in missing)
        raise NotFound(
            f"Kafka topic(s) {names} not found at {brokers}; flowport never auto-creates "
            f"topics, create them first (create_topics)",
            system=SYSTEM,
            target=",".join(missing),
        )


def create_topics(
    admin: KafkaAdminClient,
    specs: Mapping[str, Mapping[str, Any]],
    exist_ok: bool,
    timeout: float,
) -> list[str]:
    """Create topics; return the names actually created. Idempotent when ``exist_ok``."""
    result = admin.create_topics(dict(specs), timeout_ms=int(timeout * 1000), raise_errors=False)
    created, errors = [], []
    for topic in result["topics"]:
        code = topic.get("error_code", 0)
        if code == 0:
            created.append(topic["name"])
        elif code == kerr.TopicAlreadyExistsError.errno and exist_ok:
            continue
        else:
            errors.append((topic["name"], kerr.for_code(code), topic.get("error_message")))
    if created:
        admin.wait_for_topics(created, timeout_ms=int(timeout * 1000))
    if errors:
        name, cls, detail = errors[0]
        if cls is kerr.TopicAlreadyExistsError:
            raise Conflict(f"Kafka topic {name!r} already exists", system=SYSTEM, target=name)
        raise cls(f"topic {name}: {detail or cls.__name__}")
    return created


def delete_topics(
    admin: KafkaAdminClient, topics: Sequence[str], missing_ok: bool, timeout: float
) -> list[str]:
    """Delete topics; return the names deleted. Idempotent when ``missing_ok``."""
    result = admin.delete_topics(list(topics), timeout_ms=int(timeout * 1000), raise_errors=False)
    deleted = []
    for topic in result["topics"]:
        code = topic.get("error_code", 0)
        if code == 0:
            deleted.append(topic["name"])
        elif code == kerr.UnknownTopicOrPartitionError.errno:
            if not missing_ok:
                raise NotFound(
                    f"Kafka topic {topic['name']!r} not found", system=SYSTEM, target=topic["name"]
                )
        else:
            raise kerr.for_code(code)(f"topic {topic['name']}: {topic.get('error_message')}")
    return deleted


def list_topics(admin: KafkaAdminClient, include_internal: bool = False) -> list[str]:
    """Topic names, sorted; internal ones (``__consumer_offsets``) only when asked."""
    names = admin.list_topics()
    return sorted(n for n in names if include_internal or not n.startswith("__"))


def describe_topics(
    admin: KafkaAdminClient, topics: Sequence[str], brokers: str, all_configs: bool = False
) -> list[TopicInfo]:
    """Partitions (leader, replicas, in-sync replicas) and configs of each topic."""
    require_topics(admin, topics, brokers)
    metas = {t["name"]: t for t in admin.describe_topics(list(topics))}
    resources = [ConfigResource(ConfigResourceType.TOPIC, name) for name in topics]
    configs = admin.describe_configs(
        resources, config_filter="all" if all_configs else "modified"
    ).get("topic", {})
    out = []
    for name in topics:
        meta = metas[name]
        parts = [
            {
                "partition": p["partition_index"],
                "leader": p["leader_id"],
                "replicas": list(p["replica_nodes"]),
                "isr": list(p["isr_nodes"]),
            }
            for p in sorted(meta["partitions"], key=lambda p: p["partition_index"])
        ]
        cfg = {k: v.get("value") for k, v in configs.get(name, {}).items()}
        out.append(TopicInfo(name, parts, cfg, bool(meta.get("is_internal"))))
    return out


def topic_partitions(admin: KafkaAdminClient, topics: Sequence[str]) -> list[TopicPartition]:
    """Every partition of ``topics``."""
    tps = []
    for meta in admin.describe_topics(list(topics)):
        for p in meta["partitions"]:
            tps.append(TopicPartition(meta["name"], p["partition_index"]))
    return sorted(tps)


def member_partitions(
    partitions: Sequence[TopicPartition], member: int | None, members: int | None
) -> list[TopicPartition]:
    """``partitions`` sorted (topic, partition); with ``members``, the share of ``member``:
    every ``members``-th partition starting at index ``member`` (so members 0..n-1 together
    hold each partition exactly once)."""
    ordered = sorted(partitions)
    if members is None:
        return ordered
    return ordered[member::members]


def committed_offsets(admin: KafkaAdminClient, group_id: str) -> dict[TopicPartition, int]:
    """The offsets ``group_id`` committed (partitions without a commit are absent)."""
    found = admin.list_group_offsets({group_id: None}).get(group_id, {})
    return {tp: meta.offset for tp, meta in found.items() if meta is not None and meta.offset >= 0}


#: Metadata of a committed offset that pins the end of the batch being read from it.
PIN = "flowport-batch-end="


def committed_positions(
    admin: KafkaAdminClient, group_id: str
) -> dict[TopicPartition, tuple[int, str]]:
    """The offsets ``group_id`` committed, each with its metadata string."""
    found = admin.list_group_offsets({group_id: None}).get(group_id, {})
    return {
        tp: (meta.offset, meta.metadata or "")
        for tp, meta in found.items()
        if meta is not None and meta.offset >= 0
    }


def pinned_plan(
    partitions: Sequence[TopicPartition],
    positions: Mapping[TopicPartition, tuple[int, str]],
    begins: Mapping[TopicPartition, int],
) -> dict[TopicPartition, tuple[int, int]] | None:
    """The plan a previous call pinned (see :func:`pin_offsets`) and never committed, or None.

    A pin is the metadata ``flowport-batch-end=<stop>`` on a committed offset ``first``: that
    call was reading ``[first, stop)``. Reading the same ranges again (whatever arrived since,
    whatever ``max_messages`` is now) gives the same batch, so the same label and object keys.
    """
    plan: dict[TopicPartition, tuple[int, int]] = {}
    pinned = False
    for tp in partitions:
        first, meta = positions.get(tp, (None, ""))
        if first is not None and meta.startswith(PIN):
            try:
                stop = int(meta[len(PIN) :])
            except ValueError:
                stop = first
            if stop > first:
                first = max(first, begins[tp])  # retention removed part of it meanwhile
                plan[tp] = (first, max(first, stop))
                pinned = True
                continue
        plan[tp] = (first, first) if first is not None else (begins[tp], begins[tp])
    return plan if pinned else None


def pin_offsets(
    plan: Mapping[TopicPartition, tuple[int, int]],
) -> dict[TopicPartition, Any]:
    """The commit that pins ``plan``: each non-empty range's first offset, with its stop in
    the metadata. Consumers reading the offset (anyone's) see an unchanged position."""
    return {
        tp: OffsetAndMetadata(first, f"{PIN}{stop}", -1)
        for tp, (first, stop) in plan.items()
        if stop > first
    }


def plan_batch(
    partitions: Sequence[TopicPartition],
    committed: Mapping[TopicPartition, int],
    begins: Mapping[TopicPartition, int],
    ends: Mapping[TopicPartition, int],
    start: Literal["earliest", "latest"],
    max_messages: int,
) -> dict[TopicPartition, tuple[int, int]]:
    """The offset range ``[first, stop)`` to read per partition: deterministic.

    Each partition starts at the group's committed offset (where there is none, or it is out
    of range, at the earliest or the end offset, as ``start`` says) and the batch is filled
    partition by partition, in the given order, up to ``max_messages`` offsets, never past the
    end offsets snapshot ``ends``.
    """
    left = max_messages
    plan = {}
    for tp in partitions:
        begin, end = begins[tp], ends[tp]
        first = committed.get(tp)
        if first is None or not begin <= first <= end:
            first = begin if start == "earliest" else end
        take = max(0, min(end - first, left))
        plan[tp] = (first, first + take)
        left -= take
    return plan


# --------------------------------------------------------------------------- produce


def _delivery_error(
    topic: str,
    brokers: str,
    result: ProduceResult,
    failures: dict[int, BaseException],
    first_unsent: int | None,
    sent: int,
) -> DeliveryError:
    shown = sorted(failures)[:10]
    detail = "; ".join(
        f"#{i}: {redact(f'{type(failures[i]).__name__}: {failures[i]}')}" for i in shown
    )
    more = f" and {len(failures) - len(shown)} more" if len(failures) > len(shown) else ""
    unsent = f"; messages from #{first_unsent} on were not sent" if first_unsent is not None else ""
    err = DeliveryError(
        f"Kafka topic {topic!r} at {brokers}: {len(failures)} of {sent} messages were not "
        f"delivered ({detail}{more}){unsent}. Delivered messages are in .result; re-send "
        f"only the failed ones (.failed) to avoid duplicates",
        system=SYSTEM,
        target=topic,
    )
    err.failed = {i: f"{type(e).__name__}: {e}" for i, e in failures.items()}  # type: ignore[attr-defined]
    err.result = result  # type: ignore[attr-defined]
    err.first_unsent = first_unsent  # type: ignore[attr-defined]
    return err


# Errors of one message that do not stop the rest of the batch.
_PER_MESSAGE = (
    kerr.MessageSizeTooLargeError,
    kerr.RecordListTooLargeError,
    kerr.InvalidTimestampError,
    AssertionError,
    TypeError,
    ValueError,
)
_TOO_LARGE = (kerr.MessageSizeTooLargeError, kerr.RecordListTooLargeError)


class NotAcknowledged(Exception):
    """No acknowledgement and no error came back for a message within the delivery timeout."""


class TooLarge(Exception):
    """A message that cannot be delivered because of its size; the text names the limit."""


class _Sent(NamedTuple):
    """What was handed to ``producer.send``, kept until acknowledged (to re-send it)."""

    value: bytes | None
    key: bytes | None
    headers: list[tuple[str, bytes]] | None
    partition: int | None
    timestamp: int | None

    @property
    def size(self) -> int:
        return record_batch_size(self.key, self.value, self.headers)


def record_batch_size(
    key: bytes | None, value: bytes | None, headers: list[tuple[str, bytes]] | None
) -> int:
    """Bytes of an uncompressed record batch holding this one message: what the broker compares
    with the topic's ``max.message.bytes`` (and the producer with ``max_request_size``)."""
    body = 3 + DefaultRecordBatchBuilder.size_of(key, value, headers or [])  # attrs, deltas
    return int(DefaultRecordBatchBuilder.HEADER_STRUCT.size + size_of_varint(body) + body)


#: Seconds a topic's ``max.message.bytes`` is cached per process.
LIMIT_TTL = 60.0
_limits: dict[tuple[str, str], tuple[int, float]] = {}


def topic_message_limit(
    admin: KafkaAdminClient, brokers: str, topic: str, refresh: bool = False
) -> int:
    """The topic's effective ``max.message.bytes`` (its own or the broker's), cached."""
    cached = _limits.get((brokers, topic))
    if cached is not None and not refresh and time.monotonic() - cached[1] < LIMIT_TTL:
        return cached[0]
    resource = ConfigResource(ConfigResourceType.TOPIC, topic)
    configs = admin.describe_configs([resource], config_filter="all").get("topic", {})
    limit = int(configs[topic]["max.message.bytes"]["value"])
    _limits[(brokers, topic)] = (limit, time.monotonic())
    return limit


class SizeGuard:
    """Keeps one oversized message from failing the good ones around it.

    Before sending, :meth:`check` refuses a message over the producer's ``max_request_size``
    or (uncompressed) over the topic's ``max.message.bytes``. What it cannot know (the size
    after compression, a limit changed meanwhile) the broker refuses; kafka-python's idempotent
    producer then splits the batch down to the offending record and aborts *every* pending
    batch with the same error, good messages included. :func:`produce` hands those to
    :meth:`recover`, which re-sends each good one once, with a fresh producer.
    """

    def __init__(
        self,
        admin: KafkaAdminClient,
        brokers: str,
        topic: str,
        new_producer: Callable[[], KafkaProducer],
        new_consumer: Callable[[], KafkaConsumer],
        producer_config: Mapping[str, Any],
    ):
        self.admin, self.brokers, self.topic = admin, brokers, topic
        self.new_producer, self.new_consumer = new_producer, new_consumer
        self.max_request = int(producer_config.get("max_request_size", 1_048_576))
        self.compressed = producer_config.get("compression_type") not in (None, "none")
        self.limit = topic_message_limit(admin, brokers, topic)
        self.partitions = topic_partitions(admin, [topic])
        self.start = self.ends()

    def ends(self) -> dict[TopicPartition, int]:
        specs = {tp: OffsetSpec.LATEST for tp in self.partitions}
        return {tp: o.offset for tp, o in self.admin.list_partition_offsets(specs).items()}

    def check(self, message: _Sent) -> TooLarge | None:
        """Why ``message`` cannot be delivered because of its size, if that is knowable."""
        size = message.size
        if size > self.max_request:
            return TooLarge(
                f"{size} bytes, over the producer's max_request_size={self.max_request}"
            )
        if size > self.limit and not self.compressed:
            return TooLarge(
                f"{size} bytes, over topic {self.topic!r} max.message.bytes={self.limit}"
            )
        return None

    def recover(
        self, producer: KafkaProducer, outcomes: _Outcomes, result: ProduceResult
    ) -> KafkaProducer:
        """Settle the messages kafka-python failed as too large; return a working producer.

        Refused messages already in the topic (an in-flight batch the broker wrote before the
        producer aborted it) count as delivered; a message over a (refreshed) limit fails
        with the reason; the others are re-sent, the ones over the limit before compression
        alone first. Re-sent messages land after the ones sent before them.
        """
        for _ in range(3):
            refused, outcomes.refused = outcomes.refused, []
            if not refused:
                return producer
            producer = self.new_producer()  # the old one aborted itself
            self.limit = topic_message_limit(self.admin, self.brokers, self.topic, refresh=True)
            refused = self._not_written(refused, result)
            later = []
            for i, message in refused:
                why = self.check(message)
                if why is not None:
                    outcomes.failures[i] = why
                elif message.size > self.limit:  # compressed: only the broker can tell
                    producer = self._send_alone(producer, outcomes, i, message)
                else:
                    later.append((i, message))
            for i, message in later:
                outcomes.send(producer, self.topic, i, message)
            outcomes.flush(producer)
        for i, _message in outcomes.refused:
            outcomes.failures[i] = TooLarge("refused as too large by the broker three times")
        outcomes.refused = []
        return producer

    def _send_alone(
        self, producer: KafkaProducer, outcomes: _Outcomes, i: int, message: _Sent
    ) -> KafkaProducer:
        outcomes.send(producer, self.topic, i, message)
        outcomes.flush(producer)
        if outcomes.refused:
            outcomes.refused = []
            outcomes.failures[i] = TooLarge(
                f"refused alone by the broker as too large: {message.size} bytes before "
                f"compression, topic {self.topic!r} max.message.bytes={self.limit}"
            )
            return self.new_producer()
        return producer

    def _not_written(
        self, refused: list[tuple[int, _Sent]], result: ProduceResult
    ) -> list[tuple[int, _Sent]]:
        """The refused messages that are not in the topic; the others are marked delivered.

        Records this call did not get an acknowledgement for can only be in the topic when
        the end offsets moved by more than the acknowledged ones: then read them back and
        match them by key, value and headers.
        """
        ends = self.ends()
        acked = result.count
        if sum(ends.values()) - sum(self.start.values()) <= acked:
            return refused
        mine = {(p, o) for p, o in zip(result.partitions, result.offsets, strict=True) if o >= 0}
        unknown: dict[tuple[Any, ...], list[tuple[int, int]]] = {}
        consumer = self.new_consumer()
        try:
            for tp in self.partitions:
                if ends[tp] <= self.start[tp]:
                    continue
                consumer.assign([tp])
                consumer.seek(tp, self.start[tp])
                while consumer.position(tp) < ends[tp]:
                    for recs in consumer.poll(timeout_ms=1000).values():
                        for r in recs:
                            if r.offset < ends[tp] and (tp.partition, r.offset) not in mine:
                                ident = (r.key, r.value, tuple(r.headers or ()))
                                unknown.setdefault(ident, []).append((tp.partition, r.offset))
        finally:
            consumer.close(autocommit=False)
        left = []
        for i, message in refused:
            ident = (message.key, message.value, tuple(message.headers or ()))
            if unknown.get(ident):
                result.partitions[i], result.offsets[i] = unknown[ident].pop(0)
            else:
                left.append((i, message))
        return left


class _Outcomes:
    """Per-message outcomes, read off the producer's futures in send order.

    Futures are kept only until they are done (a window about the size of the producer's
    buffer), then reduced to a partition and an offset in two arrays: 12 bytes a message
    instead of a future object. Reading them in the sending thread costs less than a
    callback per message on kafka-python's I/O thread. With ``keep_sent``, what was sent is
    kept as long as its future, and messages failed as too large go to ``refused``.
    """

    __slots__ = ("failures", "keep_sent", "offsets", "partitions", "pending", "refused")

    def __init__(self, result: ProduceResult, keep_sent: bool = False):
        self.partitions = result.partitions
        self.offsets = result.offsets
        self.keep_sent = keep_sent
        self.failures: dict[int, BaseException] = {}
        self.refused: list[tuple[int, _Sent]] = []
        self.pending: deque[tuple[int, Any, _Sent | None]] = deque()

    def send(self, producer: KafkaProducer, topic: str, i: int, message: _Sent) -> None:
        v, k, headers, part, ts = message
        future = producer.send(topic, v, key=k, headers=headers, partition=part, timestamp_ms=ts)
        self.pending.append((i, future, message if self.keep_sent else None))

    def drain(self) -> None:
        pending, partitions, offsets = self.pending, self.partitions, self.offsets
        while pending and pending[0][1].is_done:
            i, future, sent = pending.popleft()
            if future.exception is None:
                md = future.value
                partitions[i] = md.partition
                offsets[i] = md.offset
            elif sent is not None and isinstance(future.exception, _TOO_LARGE):
                self.refused.append((i, sent))
            else:
                self.failures[i] = future.exception

    def flush(self, producer: KafkaProducer) -> None:
        """Wait until every sent message is acknowledged or failed.

        ``flush()`` alone is not enough: kafka-python 3.0 may raise ``UnknownError('Future
        not done')`` from it while a batch the broker refused as too large is being split and
        re-sent. So flush until no message is left without an outcome, bounded by the
        delivery timeout.
        """
        config = getattr(producer, "config", {})
        timeout = float(config.get("delivery_timeout_ms", 120_000)) / 1000
        deadline = time.monotonic() + timeout + 30
        while True:
            with contextlib.suppress(kerr.KafkaError):
                producer.flush()
            self.drain()
            if not self.pending:
                return
            if time.monotonic() > deadline:
                for i, _, _ in self.pending:
                    self.failures[i] = NotAcknowledged(f"no acknowledgement after {timeout:.0f}s")
                self.pending.clear()
                return
            time.sleep(0.05)


def produce(
    producer: KafkaProducer,
    topic: str,
    messages: Iterable[Any],
    *,
    brokers: str,
    key_serializer: SerializerSpec = "bytes",
    value_serializer: SerializerSpec = "bytes",
    progress: Callable[[int], None] | None = None,
    progress_every: int = 8192,
    guard: SizeGuard | None = None,
) -> ProduceResult:
    """Send every message and wait for every acknowledgement.

    Not retried as a whole: re-sending after an ambiguous failure could duplicate messages.
    The idempotent producer retries each batch itself (no duplicates, order kept) until
    ``delivery_timeout_ms``; whatever is still unacknowledged then is a DeliveryError. With a
    :class:`SizeGuard`, oversized messages fail alone (before sending where the limit is
    known) and good messages of a batch the broker refused are re-sent once each.
    """
    kser, vser = serializer(key_serializer), serializer(value_serializer)
    result = ProduceResult(topic)
    outcomes = _Outcomes(result, keep_sent=guard is not None)
    failures = outcomes.failures
    add_partition, add_offset = result.partitions.append, result.offsets.append
    send = outcomes.send
    nbytes = 0
    first_unsent: int | None = None
    i = -1
    started = time.perf_counter()
    for i, item in enumerate(messages):
        add_partition(-1)
        add_offset(-1)
        if type(item) is Record:
            value, key, headers = item.value, item.key, _headers(item.headers)
            part, ts = item.partition, _timestamp_ms(item.timestamp)
        else:
            value, key, headers, part, ts = item, None, None, None, None
        try:
            v = vser(value)
            k = None if key is None else kser(key)
        except Exception as exc:
            failures[i] = InvalidInput(
                f"cannot serialize message #{i}: {exc}", system=SYSTEM, target=topic
            )
            failures[i].__cause__ = exc
            continue
        message = _Sent(v, k, headers, part, ts)
        if guard is not None and (too_large := guard.check(message)) is not None:
            failures[i] = too_large
            continue
        try:
            send(producer, topic, i, message)
        except _PER_MESSAGE as exc:
            failures[i] = exc
            continue
        except Exception as exc:  # the producer itself is stuck (no metadata, closed, fatal)
            failures[i] = exc
            first_unsent = i + 1
            break
        if v is not None:
            nbytes += len(v)
        if not i % progress_every and i:
            outcomes.drain()
            if guard is not None and outcomes.refused:  # the producer aborted itself
                outcomes.flush(producer)
                producer = guard.recover(producer, outcomes, result)
            if progress is not None:
                progress(progress_every)
    outcomes.flush(producer)
    if guard is not None and outcomes.refused:
        guard.recover(producer, outcomes, result)
    result.bytes = nbytes
    result.seconds = time.perf_counter() - started
    if progress is not None and i >= 0:
        progress((i + 1) % progress_every or progress_every)
    if failures:
        raise _delivery_error(topic, brokers, result, failures, first_unsent, i + 1)
    return result


# --------------------------------------------------------------------------- consume


class Reader:
    """One consumer for one task call: subscribe, read batches, commit only when told.

    ``ends`` is a snapshot of the high watermarks taken when partitions are first assigned,
    so "read to the end" means the end as it was when reading started.
    """

    #: Seconds a joined consumer with no partitions waits for a follow-up rebalance.
    empty_grace: float = 3.0

    def __init__(
        self,
        consumer: KafkaConsumer,
        topics: Sequence[str],
        group_id: str | None,
        key_deserializer: DeserializerSpec = "bytes",
        value_deserializer: DeserializerSpec = "bytes",
    ):
        self.consumer = consumer
        self.topics = list(topics)
        self.group_id = group_id
        self.kd = deserializer(key_deserializer)
        self.vd = deserializer(value_deserializer)
        self.ends: dict[TopicPartition, int] = {}
        self.next_offsets: dict[TopicPartition, int] = {}

    # -- lifecycle ----------------------------------------------------------------------

    def join(self, timeout: float) -> None:
        """Subscribe and wait until the group gave this consumer its partitions."""
        consumer = self.consumer
        for topic in self.topics:
            # load the topics' metadata first: a group leader that does not know a topic's
            # partitions yet assigns nobody anything (kafka-python logs "No partition metadata")
            consumer.partitions_for_topic(topic)
        consumer.subscribe(self.topics)
        deadline = time.monotonic() + timeout
        empty_since: float | None = None
        self._pending: dict[TopicPartition, list[Any]] = {}
        while not consumer.assignment():
            # poll drives the join; anything it returns is kept for the first batch
            polled = consumer.poll(timeout_ms=200, max_records=1, update_offsets=True)
            for tp, recs in polled.items():
                self._pending.setdefault(tp, []).extend(recs)
            if consumer.assignment():
                break
            meta = consumer.group_metadata()
            if meta.state == MemberState.STABLE and meta.generation_id >= 0:
                # joined with no partitions: other members may hold them all, or the leader
                # lacked metadata and a rebalance follows; give that a moment before giving up
                empty_since = empty_since or time.monotonic()
                if time.monotonic() - empty_since > self.empty_grace:
                    return
            else:
                empty_since = None
            if time.monotonic() > deadline:
                raise TransientError(
                    f"Kafka consumer group {self.group_id!r} got no partitions of "
                    f"{self.topics} within {timeout:.0f}s (coordinator unavailable?)",
                    system=SYSTEM,
                    target=str(self.group_id),
                )
        self._snapshot_ends()

    def assign(self, partitions: Sequence[TopicPartition]) -> None:
        """Manual assignment (no group): for readers that must not touch any group's offsets."""
        self.consumer.assign(list(partitions))
        self._pending = {}
        self._snapshot_ends()

    def _snapshot_ends(self) -> None:
        new = [tp for tp in self.consumer.assignment() if tp not in self.ends]
        if new:
            self.ends.update(self.consumer.end_offsets(new))

    def close(self) -> None:
        """Leave the group without committing anything."""
        self.consumer.close(autocommit=False)

    # -- reading ------------------------------------------------------------------------

    def at_end(self, exact: bool = True) -> bool:
        """True when every assigned partition was read up to the snapshot of its end.

        A partition whose last message this reader saw is at (or past) its end needs no
        broker call; otherwise ``position()`` decides, which costs a round trip to the
        client's I/O thread, so while messages keep coming (``exact=False``) the offsets seen
        are trusted to say "not yet".
        """
        assigned = self.consumer.assignment()
        if not assigned:
            return True
        self._snapshot_ends()
        ends, seen = self.ends, self.next_offsets
        for tp in assigned:
            pos = seen.get(tp)
            if pos is not None and pos >= ends[tp]:
                continue
            if pos is not None and not exact:
                return False
            if self.consumer.position(tp) < ends[tp]:
                return False
        return True

    def _convert(self, records: list[Any], out: list[Message]) -> int:
        kd, vd = self.kd, self.vd
        nbytes = 0
        new, append = tuple.__new__, out.append  # Message(...) without its Python __new__
        for r in records:
            key, value = r.key, r.value
            try:
                if kd is not None and key is not None:
                    key = kd(key)
                if vd is not None:
                    value = vd(value)
            except Exception as exc:
                raise InvalidInput(
                    f"Kafka topic {r.topic!r} partition {r.partition} offset {r.offset}: "
                    f"cannot deserialize ({type(exc).__name__}: {exc}); read it with "
                    f"value_deserializer='bytes' to inspect it",
                    system=SYSTEM,
                    target=r.topic,
                ) from exc
            headers = r.headers
            append(
                new(
                    Message,
                    (
                        r.topic,
                        r.partition,
                        r.offset,
                        key,
                        value,
                        tuple(headers) if headers else (),
                        r.timestamp,
                    ),
                )
            )
            nbytes += r.serialized_value_size if r.serialized_value_size > 0 else 0
        return nbytes

    def read(self, max_messages: int, max_wait: float, stop_at_end: bool) -> Batch:
        """Up to ``max_messages``, waiting at most ``max_wait`` s; nothing is committed."""
        messages: list[Message] = []
        offsets: dict[tuple[str, int], int] = {}
        nbytes = 0
        pending, self._pending = getattr(self, "_pending", {}), {}
        polled: dict[TopicPartition, list[Any]] = pending
        deadline = time.monotonic() + max_wait
        consumer = self.consumer
        seen = self.next_offsets
        while True:
            for tp, recs in polled.items():
                if recs:
                    nbytes += self._convert(recs, messages)
                    offsets[(tp.topic, tp.partition)] = seen[tp] = recs[-1].offset + 1
            left = max_messages - len(messages)
            if left <= 0 or (stop_at_end and self.at_end(exact=not polled)):
                break
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            polled = consumer.poll(timeout_ms=int(min(remaining, 1.0) * 1000), max_records=left)
        return Batch(self.group_id, messages, offsets, nbytes)

    def read_planned(
        self,
        plan: Mapping[TopicPartition, tuple[int, int]],
        max_messages: int,
        max_wait: float,
        stop_at_end: bool,
        stall_timeout: float,
    ) -> Batch:
        """Read exactly the offset ranges of ``plan`` (see :func:`plan_batch`), then, unless
        ``stop_at_end``, wait up to ``max_wait`` s for newer messages while there is room.

        The consumer is assigned the plan's partitions manually (no group membership). The
        planned part is complete before anything else happens, so it is the same on every
        call from the same committed offsets; a read that makes no progress for
        ``stall_timeout`` s raises :class:`TransientError` (the whole call is retried).
        """
        consumer = self.consumer
        started = time.monotonic()
        got = self.fetch_planned(plan, stall_timeout)
        messages: list[Message] = []
        offsets: dict[tuple[str, int], int] = {}
        nbytes = 0
        for tp, recs in got.items():
            if recs:
                nbytes += self._convert(recs, messages)
                offsets[(tp.topic, tp.partition)] = recs[-1].offset + 1
        room = max_messages - sum(stop - first for first, stop in plan.values())
        if stop_at_end or room <= 0:
            return Batch(self.group_id, messages, offsets, nbytes)
        # every partition is read to its end: wait for newer messages while there is room
        consumer.resume(*plan)
        deadline = started + max_wait
        while room > 0 and (remaining := deadline - time.monotonic()) > 0:
            polled = consumer.poll(timeout_ms=int(min(remaining, 1.0) * 1000), max_records=room)
            for tp, recs in polled.items():
                if recs:
                    nbytes += self._convert(recs, messages)
                    offsets[(tp.topic, tp.partition)] = recs[-1].offset + 1
                    room -= len(recs)
        return Batch(self.group_id, messages, offsets, nbytes)

    def fetch_planned(
        self, plan: Mapping[TopicPartition, tuple[int, int]], stall_timeout: float
    ) -> dict[TopicPartition, list[Any]]:
        """The raw records (kafka-python ``ConsumerRecord``) of exactly the ranges of ``plan``,
        per partition in offset order; the partitions are left paused at their stops."""
        consumer = self.consumer
        consumer.assign(list(plan))
        todo: dict[TopicPartition, int] = {}
        for tp, (first, stop) in plan.items():
            consumer.seek(tp, first)
            if stop > first:
                todo[tp] = stop
        idle = [tp for tp in plan if tp not in todo]
        if idle:
            consumer.pause(*idle)
        got: dict[TopicPartition, list[Any]] = {tp: [] for tp in plan}
        progress_at = time.monotonic()
        while todo:
            left = sum(
                stop - (got[tp][-1].offset + 1 if got[tp] else plan[tp][0])
                for tp, stop in todo.items()
            )
            polled = consumer.poll(timeout_ms=200, max_records=max(1, left))
            for tp, recs in polled.items():
                until = todo.get(tp)
                if until is None:
                    continue
                keep = [r for r in recs if r.offset < until]
                if keep:
                    got[tp].extend(keep)
                    progress_at = time.monotonic()
            for tp, stop in list(todo.items()):
                if (got[tp] and got[tp][-1].offset + 1 >= stop) or consumer.position(tp) >= stop:
                    consumer.seek(tp, stop)  # records fetched past the plan are not kept
                    consumer.pause(tp)
                    del todo[tp]
                    progress_at = time.monotonic()
            if todo and time.monotonic() - progress_at > stall_timeout:
                raise TransientError(
                    f"Kafka consumer group {self.group_id!r}: reading {sorted(todo)} made no "
                    f"progress for {stall_timeout:.0f}s",
                    system=SYSTEM,
                    target=str(self.group_id),
                )
        return got

    def commit(self, offsets: Mapping[tuple[str, int], int]) -> None:
        """Commit ``offsets`` with this consumer's group membership."""
        if offsets:
            self.consumer.commit(_offset_map(offsets))


def _offset_map(offsets: Mapping[tuple[str, int], int]) -> dict[TopicPartition, Any]:
    return {TopicPartition(t, p): OffsetAndMetadata(o, "", -1) for (t, p), o in offsets.items()}


def commit_offsets(consumer: KafkaConsumer, offsets: Mapping[tuple[str, int], int]) -> None:
    """Commit explicit offsets for the consumer's group without joining it.

    kafka-python sends an OffsetCommit with no generation for a consumer that has a group_id
    and no subscription; the coordinator accepts it while the group has no active members
    (every flowport consumer has left when its task call ended). Idempotent: committing the
    same offsets twice leaves the same state.
    """
    try:
        if offsets:
            consumer.commit(_offset_map(offsets))
    finally:
        consumer.close(autocommit=False)


def find_message(
    reader: Reader,
    predicate: Callable[[Message], bool],
    timeout: float,
) -> Message | None:
    """Read (without any group) until ``predicate`` holds for a message or time is up."""
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return None
        batch = reader.read(500, min(remaining, 1.0), stop_at_end=False)
        for message in batch.messages:
            if predicate(message):
                return message


def seek_for_await(
    consumer: KafkaConsumer, partitions: Sequence[TopicPartition], since: int | datetime | None
) -> None:
    """Position manually assigned partitions at the end, or at the first message ``since``."""
    if since is None:
        consumer.seek_to_end(*partitions)
        for tp in partitions:
            consumer.position(tp)  # resolve now, so messages produced after this call count
        return
    ts = _timestamp_ms(since)
    found = consumer.offsets_for_times({tp: ts for tp in partitions})
    for tp in partitions:
        hit = found.get(tp)
        if hit is None:
            consumer.seek_to_end(tp)
            consumer.position(tp)
        else:
            consumer.seek(tp, hit.offset)


# --------------------------------------------------------------------------- lag


def consumer_lag(
    admin: KafkaAdminClient, group_id: str, topics: Sequence[str] | None
) -> list[PartitionLag]:
    """Committed offset, end offset and lag per partition of ``group_id``.

    With ``topics``, every partition of those topics is listed (lag counts from the earliest
    offset where the group committed nothing); without, the partitions the group committed.
    """
    committed = admin.list_group_offsets({group_id: None}).get(group_id, {})
    tps = topic_partitions(admin, topics) if topics else sorted(committed)
    if not tps:
        return []
    ends = admin.list_partition_offsets({tp: OffsetSpec.LATEST for tp in tps})
    starts = admin.list_partition_offsets({tp: OffsetSpec.EARLIEST for tp in tps})
    rows = []
    for tp in tps:
        end = ends[tp].offset
        meta = committed.get(tp)
        done = meta.offset if meta is not None and meta.offset >= 0 else None
        lag = end - (done if done is not None else starts[tp].offset)
        rows.append(PartitionLag(tp.topic, tp.partition, done, end, max(lag, 0)))
    return rows
