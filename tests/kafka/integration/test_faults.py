"""Fault tests on real brokers: SIGKILL mid-produce, a flow dying before its commit, and
connections cut by toxiproxy.

About the proxy: a Kafka client talks to the address a broker *advertises*, not to the one it
bootstrapped from, so a proxy in front of the harness broker's port would only ever see the
bootstrap connection. These tests start a second, private broker whose advertised listener IS
the toxiproxy port, so every connection of every client (metadata, group coordinator, fetch,
commit) runs through the proxy and a reset there hits the consumer for real.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaAdminClient, TopicPartition
from prefect import flow

from flowport.hookspecs import hookimpl
from flowport.plugins import register, unregister
from flowport.retry import RetryPolicy
from flowport_kafka import Batch, KafkaConnection, Record, commit, consume, consume_into, produce
from flowport_testing.services import Kafka, Proxy, free_port

from .conftest import block_for

pytestmark = [pytest.mark.fault, pytest.mark.usefixtures("prefect_server")]


def _end_offsets(bootstrap: str, topic: str, partitions: int) -> int:
    from kafka.admin import OffsetSpec

    admin = KafkaAdminClient(
        bootstrap_servers=bootstrap, request_timeout_ms=3000, bootstrap_timeout_ms=3000
    )
    try:
        tps = {TopicPartition(topic, p): OffsetSpec.LATEST for p in range(partitions)}
        return sum(o.offset for o in admin.list_partition_offsets(tps).values())
    finally:
        admin.close()


def test_broker_sigkill_mid_produce_loses_and_duplicates_nothing(
    kafka: Any, make_topic: Callable[..., str], group: str
) -> None:
    topic = make_topic(3)
    n = 100_000
    block = block_for(kafka.bootstrap_servers, extra_settings={"linger_ms": 5})
    records = [Record(b"payload-%d" % i, key=b"key-%d" % i) for i in range(n)]
    outcome: dict[str, Any] = {}

    def producing() -> None:
        try:
            outcome["result"] = produce.fn(block, topic, records)
        except BaseException as exc:  # reported by the assertion below
            outcome["error"] = exc

    thread = threading.Thread(target=producing)
    thread.start()
    # kill once a real part (but not all) of the messages is on the broker
    deadline = time.monotonic() + 120
    while (written_before_kill := _end_offsets(kafka.bootstrap_servers, topic, 3)) < n // 5:
        assert time.monotonic() < deadline, "producer made no progress"
        assert thread.is_alive(), f"produce ended before the kill: {outcome}"
        time.sleep(0.05)
    producing_at_kill = thread.is_alive()
    kafka.kill()
    time.sleep(2)
    kafka.restart()
    thread.join(timeout=300)
    block.close()
    assert not thread.is_alive()
    assert "error" not in outcome, outcome.get("error")
    result = outcome["result"]
    # the kill really landed mid-way: the producer was busy and the broker had part of it
    assert producing_at_kill and n // 5 <= written_before_kill < n
    assert len(result) == n and result.count == n

    reader = block_for(kafka.bootstrap_servers)
    keys: list[bytes] = []
    consume_into.fn(reader, topic, group, lambda b: keys.extend(m.key for m in b), batch_size=5000)
    reader.close()
    assert len(keys) == n  # nothing duplicated ...
    assert set(keys) == {b"key-%d" % i for i in range(n)}  # ... and nothing lost


def test_flow_failing_between_consume_and_commit_gets_the_same_messages_next_run(
    kafka_block: KafkaConnection, make_topic: Callable[..., str], group: str
) -> None:
    topic = make_topic(2)
    produce.fn(kafka_block, topic, [f"order-{i}" for i in range(40)], value_serializer="str")
    written: list[list[str]] = []

    def write(values: list[str], fail: bool) -> None:
        if fail:
            raise RuntimeError("warehouse unavailable")
        written.append(values)

    @flow(retries=0)
    def pipeline(fail: bool) -> list[str]:
        batch = consume(kafka_block, topic, group, max_messages=25, value_deserializer="str")
        write(batch.values(), fail)
        commit(kafka_block, batch)
        return batch.values()

    first_try = pipeline(fail=True, return_state=True)
    assert first_try.is_failed()
    second = pipeline(fail=False)
    third = pipeline(fail=False)
    fourth = pipeline(fail=False)
    assert len(second) == 25 and len(third) == 15 and fourth == []
    assert sorted(second + third) == sorted(f"order-{i}" for i in range(40))
    assert written == [second, third, []]


# --------------------------------------------------------------------------- behind a proxy


class ProxiedKafka(Kafka):
    """A private single-node broker that advertises ``advertised_port`` (a toxiproxy listener)
    instead of its own port, so clients reach it only through the proxy."""

    def __init__(self, port: int, advertised_port: int) -> None:
        super().__init__(port=port)
        self.advertised_port = advertised_port

    def prepare(self) -> None:
        super().prepare()
        assert self.workdir is not None
        props = Path(self.workdir) / "server.properties"
        text = props.read_text()
        own = f"advertised.listeners=PLAINTEXT://127.0.0.1:{self.port}"
        assert own in text
        props.write_text(
            text.replace(own, f"advertised.listeners=PLAINTEXT://127.0.0.1:{self.advertised_port}")
        )


@pytest.fixture(scope="module")
def proxied(toxiproxy: Any) -> Iterator[tuple[ProxiedKafka, Proxy]]:
    port = free_port()
    proxy = toxiproxy.proxy(f"flowport-kafka-tests-{port}", f"127.0.0.1:{port}")
    broker = ProxiedKafka(port=port, advertised_port=proxy.port)
    try:
        broker.start()
        yield broker, proxy
    finally:
        broker.close()
        proxy.delete()


class RetryRecorder:
    """A flowport plugin that records in-task retries."""

    def __init__(self) -> None:
        self.retries: list[tuple[str, str]] = []

    @hookimpl
    def flowport_task_retried(
        self, name: str, attempt: int, attempts: int, delay: float, exception: BaseException
    ) -> None:
        self.retries.append((name, type(exception).__name__))


def test_consumer_connections_reset_mid_read_lose_nothing(
    proxied: tuple[ProxiedKafka, Proxy], caplog: pytest.LogCaptureFixture
) -> None:
    _broker, proxy = proxied
    via_proxy = f"127.0.0.1:{proxy.port}"
    block = block_for(via_proxy)
    topic = f"reset-{time.time_ns()}"
    n = 3000
    try:
        from flowport_kafka import create_topics

        create_topics.fn(block, topic, partitions=2)
        produce.fn(block, topic, [b"m-%d" % i for i in range(n)])
        seen: list[bytes] = []
        resets = 0
        timers: list[threading.Timer] = []

        def sink(batch: Batch) -> None:
            nonlocal resets
            seen.extend(batch.values())
            if resets == 0:
                # from now on for 2 s every connection that carries data gets a TCP RST: the
                # commit of this batch, the heartbeats and the next fetches all hit it
                resets += 1
                toxic = proxy.reset_peer(0)
                timers.append(threading.Timer(2.0, toxic.remove))
                timers[-1].start()

        caplog.set_level("WARNING", logger="kafka")
        recorder = RetryRecorder()
        register(recorder, name="kafka-reset-recorder")
        # a policy that outlasts the 2 s outage for sure (the default's full jitter may not)
        policy = RetryPolicy(attempts=10, initial_delay=0.5, max_delay=2.0, jitter=False)
        try:
            result = consume_into.fn(
                block, topic, "reset-group", sink, batch_size=500, retry_policy=policy
            )
        finally:
            unregister(recorder)
    finally:
        for timer in timers:
            timer.join()
        proxy.clear()
        block.close()
    assert resets == 1
    assert result.messages == len(seen)
    assert set(seen) == {b"m-%d" % i for i in range(n)}
    # the resets really hit the client's connections (kafka-python logged the lost sockets)
    lost = [
        r
        for r in caplog.records
        if r.name.startswith("kafka")
        and ("reset" in r.getMessage().lower() or "connection" in r.getMessage().lower())
    ]
    assert lost
    # and the commit that hit them was retried by flowport, not given up
    assert ("consume_into", "TransientError") in recorder.retries


def test_unreachable_broker_is_retried_by_flowport_until_it_is_back(
    proxied: tuple[ProxiedKafka, Proxy],
) -> None:
    _broker, proxy = proxied
    via_proxy = f"127.0.0.1:{proxy.port}"
    setup = block_for(via_proxy)
    topic = f"down-{time.time_ns()}"
    from flowport_kafka import create_topics

    create_topics.fn(setup, topic, partitions=1)
    produce.fn(setup, topic, [b"a", b"b", b"c"])
    setup.close()

    recorder = RetryRecorder()
    register(recorder, name="kafka-retry-recorder")
    # a fresh block: its clients must bootstrap while the link is down
    block = block_for(via_proxy, bootstrap_timeout=1.5, request_timeout=3)
    proxy.disable()
    timer = threading.Timer(4.0, proxy.enable)
    timer.start()
    try:
        batch = consume.fn(block, topic, "down-group")
    finally:
        timer.join()
        proxy.enable()
        unregister(recorder)
        block.close()
    assert batch.values() == [b"a", b"b", b"c"]
    assert recorder.retries, "the outage should have cost at least one flowport retry"
    assert all(cause == "TransientError" for _, cause in recorder.retries)
