"""Prebuilt Prefect tasks for Kafka: RetryingTask subclasses and ready-made instances.

Every task takes a :class:`~flowport_kafka.blocks.KafkaConnection` first. Tasks default to
``cache_policy=NO_CACHE``: Prefect never hashes messages, batches or sinks.

The idempotent units flowport retries on transient errors (leader change, request timeout,
broker unreachable): creating a client, a metadata / admin request, one whole ``consume``
session (nothing is committed inside it, so a retry re-reads the same messages), one offset
commit (the same offsets twice leave the same state). ``produce`` is *not* retried as a whole:
the idempotent producer retries each batch itself without duplicates, and what is still
unacknowledged at its delivery timeout is reported in a :class:`~flowport.errors.DeliveryError`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence, Sized
from datetime import datetime
from typing import Any, Literal, TypeVar

from kafka import KafkaProducer

from flowport.artifacts import summarise
from flowport.errors import DeliveryError, FlowportError, InvalidInput, NotFound
from flowport.progress import Progress
from flowport.task import RetryingTask
from flowport_kafka import errors, queue
from flowport_kafka import lineage as kafka_lineage
from flowport_kafka.blocks import KafkaConnection
from flowport_kafka.queue import (
    Batch,
    ConsumeIntoResult,
    DeserializerSpec,
    Message,
    PartitionLag,
    ProduceResult,
    Reader,
    SerializerSpec,
    TopicInfo,
)

T = TypeVar("T")

#: Loops that move at least this many messages show a progress bar / artifact.
PROGRESS_MIN_MESSAGES = 10_000


def _topics(topics: str | Sequence[str]) -> list[str]:
    names = [topics] if isinstance(topics, str) else list(topics)
    if not names or not all(isinstance(t, str) and t for t in names):
        raise InvalidInput(
            f"Kafka topics must be non-empty names, got {topics!r}", system=errors.SYSTEM
        )
    return names


def _progress(description: str, total: int | None) -> Progress:
    progress = Progress(description, total, unit="messages")
    progress.min_total = PROGRESS_MIN_MESSAGES
    return progress


class KafkaTask(RetryingTask):
    """Base of the Kafka tasks: the transient predicate and error translation."""

    tags = ("flowport", "kafka")

    def is_transient(self, exc: BaseException) -> bool:
        return errors.is_transient(exc)

    def call(
        self,
        connection: KafkaConnection,
        target: str,
        fn: Callable[..., T],
        *args: Any,
        **kwargs: Any,
    ) -> T:
        """Run ``fn`` as one idempotent unit: kafka errors become flowport errors naming
        ``target`` and the brokers, transient ones are retried."""

        def unit() -> T:
            try:
                return fn(*args, **kwargs)
            except FlowportError:
                raise
            except Exception as exc:
                raise errors.translate(exc, target, connection.brokers) from exc

        return self.retrying(unit)


# --------------------------------------------------------------------------- produce


class Produce(KafkaTask):
    """Send messages to a topic and wait until every one is acknowledged.

    ``messages``: plain values or :class:`~flowport_kafka.Record` (value, key, headers,
    partition, timestamp). Serializers: ``'bytes'``, ``'str'``, ``'json'`` or a callable.
    Returns a :class:`~flowport_kafka.ProduceResult` with partition and offset per message. Any
    message not acknowledged raises :class:`~flowport.errors.DeliveryError` naming how many and
    which (never a silent drop). Idempotent producer, ``acks=all``. No payload hashing
    (``cache_policy=NO_CACHE``).
    """

    lineage = kafka_lineage.produce_lineage

    def run(
        self,
        connection: KafkaConnection,
        topic: str,
        messages: Iterable[Any],
        key_serializer: SerializerSpec = "bytes",
        value_serializer: SerializerSpec = "bytes",
    ) -> ProduceResult:
        target = f"topic {topic!r}"
        producer = self.call(connection, target, connection.producer)
        self.call(
            connection,
            target,
            lambda: queue.require_topics(connection.admin(), [topic], connection.brokers),
        )

        def fresh_producer() -> KafkaProducer:
            connection.reset_client("producer")
            return self.call(connection, target, connection.producer)

        guard = self.call(
            connection,
            target,
            lambda: queue.SizeGuard(
                connection.admin(),
                connection.brokers,
                topic,
                new_producer=fresh_producer,
                new_consumer=lambda: connection.new_consumer(None, enable_auto_commit=False),
                producer_config=producer.config,
            ),
        )
        total = len(messages) if isinstance(messages, Sized) else None
        with _progress(f"produce to {topic}", total) as progress:
            try:
                result = queue.produce(
                    producer,
                    topic,
                    messages,
                    brokers=connection.brokers,
                    key_serializer=key_serializer,
                    value_serializer=value_serializer,
                    progress=progress.advance,
                    guard=guard,
                )
            except DeliveryError:
                connection.reset_client("producer")  # start the next call from a clean state
                raise
            except FlowportError:
                raise
            except Exception as exc:
                connection.reset_client("producer")
                raise errors.translate(exc, target, connection.brokers) from exc
        summarise(
            self.name,
            [
                {
                    "topic": topic,
                    "messages": len(result),
                    "bytes": result.bytes,
                    "seconds": round(result.seconds, 3),
                }
            ],
        )
        return result


# --------------------------------------------------------------------------- consume


class Consume(KafkaTask):
    """Read one batch from ``group_id``'s committed offsets; commit NOTHING (unless
    ``auto_commit``).

    Returns a :class:`~flowport_kafka.Batch` (messages + the offsets ``commit`` will commit).
    Commit it with ``commit(connection, batch)`` after your downstream steps succeeded:
    at-least-once. The batch is deterministic: every partition of ``topics`` (or the share of
    ``member`` of ``members``) is read from the group's committed offset, partitions in order
    (topic, partition), each up to its end offset as of the call's start, until
    ``max_messages``. So until a commit, every call returns the same messages. The consumer
    never joins the group (manual assignment): parallel calls split partitions only through
    ``member``/``members`` (e.g. ``consume.map(..., member=[0, 1], members=unmapped(2))``).
    With ``stop_at_end=False`` and room left after the end, it waits up to ``max_wait`` s for
    newer messages. ``auto_commit=True`` commits the batch before returning it: at-most-once.
    No payload hashing (``cache_policy=NO_CACHE``).
    """

    lineage = kafka_lineage.consume_lineage

    def run(
        self,
        connection: KafkaConnection,
        topics: str | Sequence[str],
        group_id: str,
        max_messages: int = 1000,
        max_wait: float = 5.0,
        stop_at_end: bool = True,
        auto_commit: bool = False,
        start: Literal["earliest", "latest"] = "earliest",
        key_deserializer: DeserializerSpec = "bytes",
        value_deserializer: DeserializerSpec = "bytes",
        member: int | None = None,
        members: int | None = None,
    ) -> Batch:
        names = _topics(topics)
        _check_member(member, members)
        if max_messages < 1:
            raise InvalidInput(
                f"consume needs max_messages >= 1, got {max_messages}", system=errors.SYSTEM
            )
        share = "" if members is None else f" (member {member} of {members})"
        target = f"consumer group {group_id!r} on {names}{share}"
        self.call(
            connection,
            target,
            lambda: queue.require_topics(connection.admin(), names, connection.brokers),
        )
        started = time.perf_counter()

        def session() -> Batch:
            admin = connection.admin()
            partitions = queue.member_partitions(
                queue.topic_partitions(admin, names), member, members
            )
            committed = queue.committed_offsets(admin, group_id)
            reader = Reader(
                connection.new_consumer(group_id, enable_auto_commit=False),
                names,
                group_id,
                key_deserializer,
                value_deserializer,
            )
            try:
                consumer = reader.consumer
                begins = consumer.beginning_offsets(partitions) if partitions else {}
                ends = consumer.end_offsets(partitions) if partitions else {}
                plan = queue.plan_batch(partitions, committed, begins, ends, start, max_messages)
                batch = reader.read_planned(
                    plan,
                    max_messages,
                    max_wait,
                    stop_at_end,
                    stall_timeout=max(max_wait, connection.request_timeout),
                )
                if auto_commit:
                    reader.commit(batch.offsets)
                return batch
            finally:
                reader.close()

        batch = self.call(connection, target, session)
        summarise(
            self.name,
            [
                {
                    "topics": ",".join(names),
                    "group": group_id,
                    "messages": len(batch),
                    "bytes": batch.bytes,
                    "seconds": round(time.perf_counter() - started, 3),
                    "committed": auto_commit,
                }
            ],
        )
        return batch


def _check_member(member: int | None, members: int | None) -> None:
    if member is None and members is None:
        return
    if (
        member is None
        or members is None
        or isinstance(member, bool)
        or members < 1
        or not 0 <= member < members
    ):
        raise InvalidInput(
            f"consume needs member and members together, with 0 <= member < members "
            f"(got member={member!r}, members={members!r})",
            system=errors.SYSTEM,
        )


class Commit(KafkaTask):
    """Commit exactly the offsets of ``batch`` (per partition) for its consumer group.

    Works from any task call: a short-lived consumer commits explicit offsets without joining
    the group, which the coordinator accepts while no member of the group is active (flowport's
    consumers leave when their call ends). An empty batch commits nothing. Idempotent.
    """

    def run(
        self,
        connection: KafkaConnection,
        batch: Batch | Mapping[tuple[str, int], int],
        group_id: str | None = None,
    ) -> dict[tuple[str, int], int]:
        offsets = dict(batch.offsets if isinstance(batch, Batch) else batch)
        group = group_id or (batch.group_id if isinstance(batch, Batch) else None)
        if not group:
            raise InvalidInput(
                "commit needs a consumer group: the batch has none (read "
                "without a group) and no group_id was given",
                system=errors.SYSTEM,
            )
        if not offsets:
            return {}
        self.call(
            connection,
            f"consumer group {group!r}",
            lambda: queue.commit_offsets(
                connection.new_consumer(group, enable_auto_commit=False), offsets
            ),
        )
        return offsets


class ConsumeInto(KafkaTask):
    """Loop: read a batch, hand it to ``sink``, commit after the sink returned.

    ``sink`` is any callable taking a :class:`~flowport_kafka.Batch` (a function, a Prefect
    task, a flowport task). Stops after ``max_messages``, after ``max_seconds``, or
    (``until_end``, the default) at the end of the partitions as of the start. A sink that
    raises stops the loop with nothing more committed: those messages come again next run
    (at-least-once). Shows a progress bar for long loops. No payload hashing.
    """

    lineage = kafka_lineage.consume_lineage

    def run(
        self,
        connection: KafkaConnection,
        topics: str | Sequence[str],
        group_id: str,
        sink: Callable[[Batch], Any],
        batch_size: int = 1000,
        max_messages: int | None = None,
        max_seconds: float | None = None,
        until_end: bool = True,
        poll_wait: float = 1.0,
        start: Literal["earliest", "latest"] = "earliest",
        key_deserializer: DeserializerSpec = "bytes",
        value_deserializer: DeserializerSpec = "bytes",
        join_timeout: float = 30.0,
    ) -> ConsumeIntoResult:
        names = _topics(topics)
        if not until_end and max_messages is None and max_seconds is None:
            raise InvalidInput(
                "consume_into needs a stop: until_end, max_messages or max_seconds",
                system=errors.SYSTEM,
            )
        target = f"consumer group {group_id!r} on {names}"
        self.call(
            connection,
            target,
            lambda: queue.require_topics(connection.admin(), names, connection.brokers),
        )
        out = ConsumeIntoResult()
        started = time.perf_counter()
        deadline = None if max_seconds is None else time.monotonic() + max_seconds

        def open_reader() -> Reader:
            reader = Reader(
                connection.new_consumer(
                    group_id, enable_auto_commit=False, auto_offset_reset=start
                ),
                names,
                group_id,
                key_deserializer,
                value_deserializer,
            )
            try:
                reader.join(join_timeout)
            except BaseException:
                reader.close()
                raise
            return reader

        reader = self.call(connection, target, open_reader)
        try:
            total = max_messages
            if until_end and total is None:
                consumer = reader.consumer
                total = sum(max(0, end - consumer.position(tp)) for tp, end in reader.ends.items())
            with _progress(f"consume {','.join(names)} as {group_id}", total) as progress:
                while True:
                    if max_messages is not None and out.messages >= max_messages:
                        out.stopped_by = "max_messages"
                        break
                    if deadline is not None and time.monotonic() >= deadline:
                        out.stopped_by = "max_seconds"
                        break
                    if until_end and reader.at_end():
                        out.stopped_by = "end"
                        break
                    want = batch_size
                    if max_messages is not None:
                        want = min(want, max_messages - out.messages)
                    wait = poll_wait
                    if deadline is not None:
                        wait = max(0.0, min(wait, deadline - time.monotonic()))
                    try:
                        batch = reader.read(want, wait, stop_at_end=until_end)
                    except FlowportError:
                        raise
                    except Exception as exc:
                        raise errors.translate(exc, target, connection.brokers) from exc
                    if not batch:
                        continue
                    returned = sink(batch)
                    if returned is not None:
                        out.sink_results.append(returned)
                    self.call(connection, target, reader.commit, batch.offsets)
                    out.committed.update(batch.offsets)
                    out.messages += len(batch)
                    out.bytes += batch.bytes
                    out.batches += 1
                    progress.advance(len(batch))
        finally:
            reader.close()
        out.seconds = time.perf_counter() - started
        summarise(
            self.name,
            [
                {
                    "topics": ",".join(names),
                    "group": group_id,
                    "messages": out.messages,
                    "bytes": out.bytes,
                    "batches": out.batches,
                    "seconds": round(out.seconds, 3),
                    "stopped_by": out.stopped_by,
                }
            ],
        )
        return out


class AwaitMessage(KafkaTask):
    """Sensor: wait until a message matching ``predicate`` arrives on ``topic``; return it.

    Reads with no consumer group (manual assignment of every partition), so it commits no
    offsets for anybody. Starts at the end of the topic as of the call, or at ``since`` (ms
    since the epoch or a datetime). Raises :class:`~flowport_kafka.errors.WaitTimeout` after
    ``timeout`` seconds.
    """

    def run(
        self,
        connection: KafkaConnection,
        topic: str,
        predicate: Callable[[Message], bool] | None = None,
        timeout: float = 60.0,
        since: int | datetime | None = None,
        key_deserializer: DeserializerSpec = "bytes",
        value_deserializer: DeserializerSpec = "bytes",
    ) -> Message:
        target = f"topic {topic!r}"
        match = predicate or (lambda message: True)

        def open_reader() -> Reader:
            tps = queue.topic_partitions(connection.admin(), [topic])
            reader = Reader(
                connection.new_consumer(None, enable_auto_commit=False),
                [topic],
                None,
                key_deserializer,
                value_deserializer,
            )
            try:
                reader.assign(tps)
                queue.seek_for_await(reader.consumer, tps, since)
            except BaseException:
                reader.close()
                raise
            return reader

        self.call(
            connection,
            target,
            lambda: queue.require_topics(connection.admin(), [topic], connection.brokers),
        )
        reader = self.call(connection, target, open_reader)
        try:
            found = self.call(connection, target, queue.find_message, reader, match, timeout)
        finally:
            reader.close()
        if found is None:
            raise errors.WaitTimeout(
                f"Kafka topic {topic!r} at {connection.brokers}: no matching message within "
                f"{timeout:.0f}s",
                system=errors.SYSTEM,
                target=topic,
            )
        return found


# --------------------------------------------------------------------------- admin


class CreateTopics(KafkaTask):
    """Create topics (names, or ``{name: {num_partitions, replication_factor, configs}}``).

    Returns the names created; with ``exist_ok`` (default) existing topics are left alone, so
    the call is idempotent and retried on transient errors. Waits until each has leaders.
    """

    def run(
        self,
        connection: KafkaConnection,
        topics: str | Sequence[str] | Mapping[str, Mapping[str, Any]],
        partitions: int = 1,
        replication_factor: int = 1,
        configs: Mapping[str, str] | None = None,
        exist_ok: bool = True,
        timeout: float = 30.0,
    ) -> list[str]:
        base = {
            "num_partitions": partitions,
            "replication_factor": replication_factor,
            "configs": {k: str(v) for k, v in (configs or {}).items()},
        }
        if isinstance(topics, Mapping):
            specs = {name: {**base, **dict(spec)} for name, spec in topics.items()}
        else:
            specs = {name: dict(base) for name in _topics(topics)}
        return self.call(
            connection,
            f"topics {sorted(specs)}",
            lambda: queue.create_topics(connection.admin(), specs, exist_ok, timeout),
        )


class DeleteTopics(KafkaTask):
    """Delete topics; returns the names deleted. ``missing_ok`` (default) makes it idempotent."""

    def run(
        self,
        connection: KafkaConnection,
        topics: str | Sequence[str],
        missing_ok: bool = True,
        timeout: float = 30.0,
    ) -> list[str]:
        names = _topics(topics)
        return self.call(
            connection,
            f"topics {names}",
            lambda: queue.delete_topics(connection.admin(), names, missing_ok, timeout),
        )


class ListTopics(KafkaTask):
    """Names of the cluster's topics, sorted (internal ``__*`` topics only if asked)."""

    def run(self, connection: KafkaConnection, include_internal: bool = False) -> list[str]:
        return self.call(
            connection, "topics", lambda: queue.list_topics(connection.admin(), include_internal)
        )


class DescribeTopics(KafkaTask):
    """Partitions (leader, replicas, in-sync replicas) and configs of topics.

    Configs: the non-default ones, or every one with ``all_configs=True``.
    """

    def run(
        self,
        connection: KafkaConnection,
        topics: str | Sequence[str],
        all_configs: bool = False,
    ) -> list[TopicInfo]:
        names = _topics(topics)
        return self.call(
            connection,
            f"topics {names}",
            lambda: queue.describe_topics(
                connection.admin(), names, connection.brokers, all_configs
            ),
        )


# --------------------------------------------------------------------------- lag


class ConsumerLag(KafkaTask):
    """Per partition: the group's committed offset, the end offset and the lag."""

    def run(
        self,
        connection: KafkaConnection,
        group_id: str,
        topics: str | Sequence[str] | None = None,
    ) -> list[PartitionLag]:
        names = None if topics is None else _topics(topics)
        target = f"consumer group {group_id!r}"
        if names:
            self.call(
                connection,
                target,
                lambda: queue.require_topics(connection.admin(), names, connection.brokers),
            )
        return self.call(
            connection, target, lambda: queue.consumer_lag(connection.admin(), group_id, names)
        )


class WaitForLagBelow(KafkaTask):
    """Sensor: wait until the group's total lag is below ``threshold``; return the lag rows.

    Without ``topics`` the group's committed partitions are watched, and a group that
    committed nothing (a typo in its name, say) raises :class:`~flowport.errors.NotFound`
    naming it, never a silent success. Raises :class:`~flowport_kafka.errors.WaitTimeout`
    after ``timeout`` seconds.
    """

    def run(
        self,
        connection: KafkaConnection,
        group_id: str,
        threshold: int,
        timeout: float = 300.0,
        topics: str | Sequence[str] | None = None,
        poll_interval: float = 2.0,
    ) -> list[PartitionLag]:
        names = None if topics is None else _topics(topics)
        target = f"consumer group {group_id!r}"
        deadline = time.monotonic() + timeout
        while True:
            rows = self.call(
                connection, target, lambda: queue.consumer_lag(connection.admin(), group_id, names)
            )
            if not rows and names is None:
                raise NotFound(
                    f"Kafka consumer group {group_id!r} at {connection.brokers} has committed "
                    f"no offsets (a typo in the group name?); to wait for a group that has not "
                    f"committed yet, pass topics= (its lag then counts from the earliest offset)",
                    system=errors.SYSTEM,
                    target=group_id,
                )
            total = sum(r.lag for r in rows)
            if total < threshold:
                return rows
            if time.monotonic() + poll_interval > deadline:
                raise errors.WaitTimeout(
                    f"Kafka consumer group {group_id!r} at {connection.brokers}: lag still "
                    f"{total} (threshold {threshold}) after {timeout:.0f}s",
                    system=errors.SYSTEM,
                    target=group_id,
                )
            time.sleep(poll_interval)


produce = Produce()
consume = Consume()
commit = Commit()
consume_into = ConsumeInto()
await_message = AwaitMessage()
create_topics = CreateTopics()
delete_topics = DeleteTopics()
list_topics = ListTopics()
describe_topics = DescribeTopics()
consumer_lag = ConsumerLag()
wait_for_lag_below = WaitForLagBelow()
