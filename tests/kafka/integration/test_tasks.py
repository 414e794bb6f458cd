"""Every task against the real broker, inside Prefect flows where it matters."""

from __future__ import annotations

import logging
import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from prefect import flow

from flowport.errors import ConfigError, DeliveryError, NotFound, TransientError
from flowport.plugins import get_connector
from flowport_kafka import (
    Batch,
    KafkaConnection,
    Record,
    WaitTimeout,
    await_message,
    commit,
    consume,
    consume_into,
    consumer_lag,
    create_topics,
    delete_topics,
    describe_topics,
    list_topics,
    produce,
    wait_for_lag_below,
)

from .conftest import block_for

pytestmark = pytest.mark.usefixtures("prefect_server")


def _committed(admin: KafkaAdminClient, group: str) -> dict[tuple[str, int], int]:
    offsets = admin.list_group_offsets({group: None}).get(group, {})
    return {(tp.topic, tp.partition): om.offset for tp, om in offsets.items()}


def _groups(admin: KafkaAdminClient) -> set[str]:
    return {g["group_id"] for g in admin.list_groups()}


def test_produce_then_consume_round_trips_keys_headers_values_in_a_flow(
    kafka_block: KafkaConnection, make_topic: Callable[..., str], group: str
) -> None:
    topic = make_topic(3)
    records = [
        Record(
            {"n": i},
            key=f"k{i}",
            headers={"source": "test", "n": str(i)},
            timestamp=1_700_000_000_000 + i,
        )
        for i in range(50)
    ]

    @flow
    def pipeline() -> tuple[Any, Batch]:
        result = produce(kafka_block, topic, records, key_serializer="str", value_serializer="json")
        batch = consume(
            kafka_block, topic, group, key_deserializer="str", value_deserializer="json"
        )
        return result, batch

    result, batch = pipeline()
    assert len(result) == 50 and all(d.offset >= 0 for d in result)
    assert sorted(m.value["n"] for m in batch) == list(range(50))
    by_key = {m.key: m for m in batch}
    m7 = by_key["k7"]
    assert m7.value == {"n": 7} and m7.header("source") == b"test" and m7.header("n") == b"7"
    assert m7.timestamp == 1_700_000_000_007
    # per-message metadata points at where the message really is
    delivered = result[7]
    assert (m7.partition, m7.offset) == (delivered.partition, delivered.offset)
    # same key, same partition
    assert len({m.partition for m in batch if m.key == "k7"}) == 1


def test_consume_commits_nothing_and_commit_commits_exactly_the_batch(
    kafka_block: KafkaConnection,
    make_topic: Callable[..., str],
    group: str,
    raw_admin: KafkaAdminClient,
) -> None:
    topic = make_topic(2)
    produce.fn(kafka_block, topic, [Record(b"v%d" % i, partition=i % 2) for i in range(20)])

    first = consume.fn(kafka_block, topic, group, max_messages=7)
    assert len(first) == 7
    assert _committed(raw_admin, group) == {}
    everything = {
        (m.partition, m.offset) for m in consume.fn(kafka_block, topic, group, max_messages=100)
    }
    assert len(everything) == 20  # nothing was committed: the whole topic again

    committed = commit.fn(kafka_block, first)  # a separate call: a separate consumer
    assert committed == first.offsets
    assert _committed(raw_admin, group) == first.offsets

    rest = consume.fn(kafka_block, topic, group, max_messages=100)
    read_first = {(m.partition, m.offset) for m in first}
    assert {(m.partition, m.offset) for m in rest} == everything - read_first
    assert len(rest) == 20 - 7


def test_auto_commit_is_at_most_once(
    kafka_block: KafkaConnection,
    make_topic: Callable[..., str],
    group: str,
    raw_admin: KafkaAdminClient,
) -> None:
    topic = make_topic(1)
    produce.fn(kafka_block, topic, [b"a", b"b", b"c"])
    batch = consume.fn(kafka_block, topic, group, auto_commit=True)
    assert batch.values() == [b"a", b"b", b"c"]
    assert _committed(raw_admin, group) == {(topic, 0): 3}
    assert len(consume.fn(kafka_block, topic, group, max_wait=1)) == 0


def test_consume_stops_at_the_end_and_waits_when_asked(
    kafka_block: KafkaConnection, make_topic: Callable[..., str], group: str
) -> None:
    topic = make_topic(1)
    assert len(consume.fn(kafka_block, topic, group)) == 0  # empty topic: returns at once

    def later() -> None:
        time.sleep(2)
        produce.fn(kafka_block, topic, [b"late"])

    thread = threading.Thread(target=later)
    thread.start()
    batch = consume.fn(kafka_block, topic, group, max_messages=1, max_wait=30, stop_at_end=False)
    thread.join()
    assert batch.values() == [b"late"]


def test_consume_into_commits_after_each_sink_call_and_stops_at_end(
    kafka_block: KafkaConnection,
    make_topic: Callable[..., str],
    group: str,
    raw_admin: KafkaAdminClient,
) -> None:
    topic = make_topic(3)
    produce.fn(kafka_block, topic, [f"m{i}" for i in range(250)], value_serializer="str")
    seen: list[str] = []
    commits_seen_by_sink: list[int] = []

    def sink(batch: Batch) -> int:
        # what is committed while the sink runs never includes the batch being handled
        commits_seen_by_sink.append(sum(_committed(raw_admin, group).values()))
        seen.extend(batch.values())
        return len(batch)

    @flow
    def pipeline() -> Any:
        return consume_into(
            kafka_block, topic, group, sink, batch_size=100, value_deserializer="str"
        )

    result = pipeline()
    assert result.messages == 250 and result.stopped_by == "end"
    assert sorted(seen) == sorted(f"m{i}" for i in range(250))
    assert sum(result.sink_results) == 250
    assert sum(_committed(raw_admin, group).values()) == 250
    running = 0
    for before, handled in zip(commits_seen_by_sink, result.sink_results, strict=True):
        assert before == running
        running += handled


def test_consume_into_sink_failure_commits_nothing_more(
    kafka_block: KafkaConnection,
    make_topic: Callable[..., str],
    group: str,
    raw_admin: KafkaAdminClient,
) -> None:
    topic = make_topic(1)
    produce.fn(kafka_block, topic, [b"x"] * 30)
    calls = 0

    def sink(batch: Batch) -> None:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise RuntimeError("downstream is down")

    with pytest.raises(RuntimeError, match="downstream is down"):
        consume_into.fn(kafka_block, topic, group, sink, batch_size=10)
    assert _committed(raw_admin, group) == {(topic, 0): 10}
    again = consume_into.fn(kafka_block, topic, group, lambda b: None, batch_size=10)
    assert again.messages == 20


def test_consume_into_count_limit(
    kafka_block: KafkaConnection, make_topic: Callable[..., str], group: str
) -> None:
    topic = make_topic(1)
    produce.fn(kafka_block, topic, [b"x"] * 40)
    result = consume_into.fn(
        kafka_block, topic, group, lambda b: None, batch_size=15, max_messages=20
    )
    assert result.messages == 20 and result.stopped_by == "max_messages"


def test_admin_tasks(kafka_block: KafkaConnection, raw_admin: KafkaAdminClient) -> None:
    name = f"adm-{time.time_ns()}"

    @flow
    def admin_flow() -> Any:
        created = create_topics(
            kafka_block, {name: {"num_partitions": 4}}, configs={"retention.ms": "3600000"}
        )
        again = create_topics(kafka_block, name)
        return created, again, list_topics(kafka_block), describe_topics(kafka_block, name)

    created, again, names, (info,) = admin_flow()
    assert created == [name] and again == []
    assert name in names and not any(n.startswith("__") for n in names)
    assert info.name == name and info.partition_count == 4
    assert [p["partition"] for p in info.partitions] == [0, 1, 2, 3]
    assert all(
        p["replicas"] == [1] and p["isr"] == [1] and p["leader"] == 1 for p in info.partitions
    )
    assert info.configs["retention.ms"] == "3600000"
    full = describe_topics.fn(kafka_block, name, all_configs=True)[0]
    assert "cleanup.policy" in full.configs

    assert delete_topics.fn(kafka_block, name) == [name]
    assert delete_topics.fn(kafka_block, name) == []  # missing_ok
    with pytest.raises(NotFound):
        delete_topics.fn(kafka_block, name, missing_ok=False)
    with pytest.raises(NotFound, match=name):
        describe_topics.fn(kafka_block, name)


def test_unknown_topic_is_permanent_and_names_topic_and_brokers(
    kafka_block: KafkaConnection, group: str
) -> None:
    with pytest.raises(NotFound) as info:
        produce.fn(kafka_block, "no-such-topic", [b"x"])
    assert "no-such-topic" in str(info.value) and kafka_block.bootstrap_servers in str(info.value)
    with pytest.raises(NotFound, match="no-such-topic"):
        consume.fn(kafka_block, ["no-such-topic"], group)


def test_message_too_large_is_a_delivery_error_naming_it(
    kafka_block: KafkaConnection, make_topic: Callable[..., str], group: str
) -> None:
    topic = make_topic(1)
    big = b"x" * (2 * 1024 * 1024)  # over the producer's max_request_size (1 MiB)
    with pytest.raises(DeliveryError) as info:
        produce.fn(kafka_block, topic, [b"small", big, b"small2"])
    err = info.value
    assert sorted(err.failed) == [1]  # type: ignore[attr-defined]
    assert "over the producer's max_request_size=1048576" in err.failed[1]  # type: ignore[attr-defined]
    assert "1 of 3" in str(err)
    assert consume.fn(kafka_block, topic, group).values() == [b"small", b"small2"]


def test_broker_side_rejection_is_a_delivery_error(
    kafka_block: KafkaConnection, group: str, raw_admin: KafkaAdminClient
) -> None:
    # a topic whose max.message.bytes is below the message: the broker (not the client)
    # refuses it, and the producer's future fails asynchronously
    name = f"small-{time.time_ns()}"
    create_topics.fn(kafka_block, name, configs={"max.message.bytes": "1000"})
    try:
        with pytest.raises(DeliveryError) as info:
            produce.fn(kafka_block, name, [b"ok", b"y" * 5000])
        assert 1 in info.value.failed  # type: ignore[attr-defined]
        assert consume.fn(kafka_block, name, group).values() == [b"ok"]
    finally:
        delete_topics.fn(kafka_block, name)


def test_lag_and_lag_sensor(
    kafka_block: KafkaConnection, make_topic: Callable[..., str], group: str
) -> None:
    topic = make_topic(2)
    produce.fn(kafka_block, topic, [Record(b"x", partition=i % 2) for i in range(10)])
    rows = consumer_lag.fn(kafka_block, group, topic)
    assert [(r.partition, r.committed, r.end, r.lag) for r in rows] == [
        (0, None, 5, 5),
        (1, None, 5, 5),
    ]
    batch = consume.fn(kafka_block, topic, group, max_messages=100)
    commit.fn(kafka_block, batch)
    assert sum(r.lag for r in consumer_lag.fn(kafka_block, group, topic)) == 0
    assert consumer_lag.fn(kafka_block, group)  # the group's own partitions, no topics given

    produce.fn(kafka_block, topic, [b"more"] * 3)
    with pytest.raises(WaitTimeout, match="lag still 3"):
        wait_for_lag_below.fn(kafka_block, group, 1, timeout=1, topics=topic, poll_interval=0.2)

    def drain() -> None:
        time.sleep(1)
        commit.fn(kafka_block, consume.fn(kafka_block, topic, group))

    thread = threading.Thread(target=drain)
    thread.start()
    rows = wait_for_lag_below.fn(kafka_block, group, 1, timeout=60, topics=topic, poll_interval=0.2)
    thread.join()
    assert sum(r.lag for r in rows) == 0


def test_await_message_commits_nothing_for_anyone(
    kafka_block: KafkaConnection,
    make_topic: Callable[..., str],
    group: str,
    raw_admin: KafkaAdminClient,
    kafka: Any,
) -> None:
    topic = make_topic(2)
    produce.fn(kafka_block, topic, [b"old-target"])  # before the call: not matched (from end)
    # an ordinary consumer group that has read part of the topic
    batch = consume.fn(kafka_block, topic, group)
    commit.fn(kafka_block, batch)
    before = _committed(raw_admin, group)
    groups_before = _groups(raw_admin)

    def later() -> None:
        time.sleep(2)
        produce.fn(kafka_block, topic, [b"noise", b"target", b"after"])

    thread = threading.Thread(target=later)
    thread.start()
    found = await_message.fn(
        kafka_block,
        topic,
        lambda m: m.value.endswith(b"target") and m.value != b"old-target",
        timeout=60,
    )
    thread.join()
    assert found.value == b"target"
    assert _committed(raw_admin, group) == before
    groups_after = _groups(raw_admin)
    assert groups_after == groups_before  # await_message joined / created no group

    with pytest.raises(WaitTimeout):
        await_message.fn(kafka_block, topic, lambda m: False, timeout=2)
    # since=: finds a message produced before the call
    old = await_message.fn(
        kafka_block, topic, lambda m: m.value == b"old-target", timeout=10, since=0
    )
    assert old.value == b"old-target"


def test_bad_extra_setting_fails_before_any_connection() -> None:
    with pytest.raises(ConfigError, match="compresion_type"):
        KafkaConnection(bootstrap_servers="127.0.0.1:1", extra_settings={"compresion_type": "gzip"})


def test_extra_settings_reach_the_clients(
    kafka: Any, make_topic: Callable[..., str], group: str
) -> None:
    block = block_for(
        kafka.bootstrap_servers, extra_settings={"compression_type": "gzip", "max_poll_records": 3}
    )
    try:
        topic = make_topic(1)
        assert block.producer().config["compression_type"] == "gzip"
        produce.fn(block, topic, [b"z" * 1000] * 5)
        assert len(consume.fn(block, topic, group)) == 5
    finally:
        block.close()


def test_check_lists_topics(kafka_block: KafkaConnection, make_topic: Callable[..., str]) -> None:
    make_topic(1)
    summary = get_connector("kafka").check(kafka_block)  # type: ignore[misc]
    assert kafka_block.bootstrap_servers in summary and "topic(s)" in summary


def test_check_fails_fast_on_a_dead_address() -> None:
    from flowport_testing.services import free_port

    block = block_for(f"127.0.0.1:{free_port()}", bootstrap_timeout=2)
    with pytest.raises(TransientError, match="Unable to bootstrap"):
        get_connector("kafka").check(block)  # type: ignore[misc]


def test_block_survives_pickling_into_a_fresh_process_state(
    kafka_block: KafkaConnection, make_topic: Callable[..., str], group: str
) -> None:
    import cloudpickle

    topic = make_topic(1)
    produce.fn(kafka_block, topic, [b"before"])
    clone = cloudpickle.loads(cloudpickle.dumps(kafka_block))
    try:
        assert clone._clients == {}
        produce.fn(clone, topic, [b"after"])
        assert clone.producer() is not kafka_block.producer()
        assert consume.fn(clone, topic, group).values() == [b"before", b"after"]
    finally:
        clone.close()


def test_raw_consumer_sees_committed_offsets(
    kafka: Any, kafka_block: KafkaConnection, make_topic: Callable[..., str], group: str
) -> None:
    # an independent kafka-python consumer in the same group starts where flowport committed
    topic = make_topic(1)
    produce.fn(kafka_block, topic, [b"a", b"b", b"c", b"d"])
    commit.fn(kafka_block, consume.fn(kafka_block, topic, group, max_messages=2))
    raw = KafkaConsumer(
        bootstrap_servers=kafka.bootstrap_servers, group_id=group, enable_auto_commit=False
    )
    try:
        assert raw.committed(TopicPartition(topic, 0)) == 2
    finally:
        raw.close(autocommit=False)


def test_lag_sensor_on_a_group_that_never_committed_fails_naming_it(
    kafka_block: KafkaConnection, make_topic: Callable[..., str], group: str
) -> None:
    topic = make_topic(1)
    produce.fn(kafka_block, topic, [b"x"])
    commit.fn(kafka_block, consume.fn(kafka_block, topic, group))  # the real group: lag 0
    typo = f"{group}-typo"
    with pytest.raises(NotFound, match=f"{typo}.*committed no offsets"):
        wait_for_lag_below.fn(kafka_block, typo, 1000, timeout=5, poll_interval=0.2)
    # with topics= a group that never committed is watched from the earliest offset
    with pytest.raises(WaitTimeout, match="lag still 1"):
        wait_for_lag_below.fn(kafka_block, typo, 1, timeout=1, topics=topic, poll_interval=0.2)
    assert wait_for_lag_below.fn(kafka_block, group, 1, timeout=5, poll_interval=0.2)


@pytest.fixture
def kafka_logger() -> Iterator[logging.Logger]:
    """kafka-python's logger as a fresh process has it (no level set), restored after."""
    logger = logging.getLogger("kafka")
    before = logger.level
    logger.setLevel(logging.NOTSET)
    yield logger
    logger.setLevel(before)


def test_flowport_check_keeps_kafka_python_quiet_unless_asked(
    kafka_block: KafkaConnection,
    kafka_logger: logging.Logger,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from flowport.cli import main
    from flowport_testing.services import free_port

    env = "FLOWPORT_KAFKA_LOG_LEVEL"

    def kafka_lines() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.name.startswith("kafka")]

    monkeypatch.delenv(env, raising=False)
    caplog.set_level(logging.DEBUG)  # the root logger passes everything on
    name = f"check-{uuid.uuid4().hex[:8]}"
    kafka_block.save(name)
    assert main(["check", "kafka", "--block", name]) == 0
    assert "OK: Kafka at" in capsys.readouterr().out
    assert kafka_lines() == []
    assert kafka_logger.level == logging.NOTSET  # restored after the check

    # a dead address: the failure names the cause once; kafka-python's retries stay quiet
    dead = block_for(f"127.0.0.1:{free_port()}", bootstrap_timeout=2)
    dead_name = f"dead-{uuid.uuid4().hex[:8]}"
    dead.save(dead_name)
    assert main(["check", "kafka", "--block", dead_name]) == 1
    assert "Unable to bootstrap" in capsys.readouterr().err
    assert kafka_lines() == []

    # asked for: the environment variable, or a level the user set on the logger
    monkeypatch.setenv(env, "DEBUG")
    assert main(["check", "kafka", "--block", name]) == 0
    assert kafka_lines()
    monkeypatch.delenv(env)
    caplog.clear()
    kafka_logger.setLevel(logging.INFO)
    assert main(["check", "kafka", "--block", name]) == 0
    assert kafka_lines() and kafka_logger.level == logging.INFO


def _read_back(bootstrap: str, topic: str, partitions: int) -> Counter[bytes]:
    """Every value in the topic, counted, read by a plain kafka-python consumer (no group)."""
    raw = KafkaConsumer(
        bootstrap_servers=bootstrap, auto_offset_reset="earliest", consumer_timeout_ms=3000
    )
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        raw.assign(tps)
        ends = raw.end_offsets(tps)
        values: Counter[bytes] = Counter()
        while any(raw.position(tp) < ends[tp] for tp in tps):
            for recs in raw.poll(timeout_ms=1000).values():
                values.update(r.value for r in recs)
        return values
    finally:
        raw.close(autocommit=False)


def _topic_with_limit(raw_admin: KafkaAdminClient, partitions: int, limit: int) -> str:
    name = f"limit-{uuid.uuid4().hex[:12]}"
    raw_admin.create_topics(
        {
            name: {
                "num_partitions": partitions,
                "replication_factor": 1,
                "configs": {"max.message.bytes": str(limit)},
            }
        },
        wait_for_metadata=True,
    )
    return name


def test_message_over_the_topic_limit_fails_alone(
    kafka: Any, kafka_block: KafkaConnection, raw_admin: KafkaAdminClient
) -> None:
    topic = _topic_with_limit(raw_admin, 1, 10_000)
    try:
        messages = [b"good-%04d" % i + b"x" * 100 for i in range(1000)]
        messages[500] = b"y" * 20_000
        with pytest.raises(DeliveryError, match="1 of 1000") as info:
            produce.fn(kafka_block, topic, messages)
        failed = info.value.failed  # type: ignore[attr-defined]
        assert list(failed) == [500]
        assert "20072 bytes, over topic" in failed[500] and "max.message.bytes=10000" in failed[500]
        good = Counter(m for i, m in enumerate(messages) if i != 500)
        assert _read_back(kafka.bootstrap_servers, topic, 1) == good
    finally:
        raw_admin.delete_topics([topic], raise_errors=False)


def test_batch_refused_by_the_broker_resends_its_good_messages_exactly_once(
    kafka: Any, raw_admin: KafkaAdminClient
) -> None:
    # compressed: only the broker can tell whether a message fits, so the oversized one goes
    # out in a batch with good ones; kafka-python's producer then fails every pending message
    topic = _topic_with_limit(raw_admin, 3, 10_000)
    block = block_for(kafka.bootstrap_servers, extra_settings={"compression_type": "gzip"})
    try:
        messages = [b"good-%04d" % i + b"x" * 200 for i in range(3000)]
        messages[1500] = random.Random(13).randbytes(20_000)  # incompressible
        with pytest.raises(DeliveryError, match="1 of 3000") as info:
            produce.fn(block, topic, messages)
        failed = info.value.failed  # type: ignore[attr-defined]
        assert list(failed) == [1500]
        assert "refused alone by the broker as too large" in failed[1500]
        assert "max.message.bytes=10000" in failed[1500]
        result = info.value.result  # type: ignore[attr-defined]
        assert result.count == 2999
        good = Counter(m for i, m in enumerate(messages) if i != 1500)
        assert _read_back(kafka.bootstrap_servers, topic, 3) == good  # each exactly once
    finally:
        block.close()
        raw_admin.delete_topics([topic], raise_errors=False)
