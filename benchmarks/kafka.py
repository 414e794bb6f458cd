"""Kafka benchmark: flowport-kafka vs raw kafka-python vs confluent-kafka, on the harness broker.

    python benchmarks/kafka.py [--quick] [--messages N] [--rounds R]
    python benchmarks/kafka.py --transfer [--messages N] [--rounds R]

Produces N messages of 100 bytes (1,000,000; 50,000 with --quick) and consumes them back with

* flowport ``produce`` / ``consume_into`` (task bodies, ``.fn``: no Prefect run overhead;
  produce waits for and records every acknowledgement, consume_into commits after each batch),
* raw kafka-python with the very same client settings (the block's ``client_config``):
  ``send`` + ``flush``; ``subscribe`` + ``poll`` + a synchronous ``commit`` per batch,
* confluent-kafka (librdkafka, the native reference) with the same semantic settings
  (idempotent, acks=all, linger 5 ms; the same batch size and per-batch commit),

each into / from its own fresh topic and consumer group, in rotating order, R rounds, and
prints the median messages/s, MB/s and the ratio to raw kafka-python measured in the same run.

``--transfer``: Kafka -> Parquet on S3 (the harness's S3 gateway). N messages (200,000 by
default; ``--messages 1000000`` for the issue's figure) are produced once; then, in rotating
order, R rounds each of

* flowport ``consume_to_store`` (``KafkaSource`` + ``StoreSink``, task body): one Parquet file
  per batch of ``TRANSFER_BATCH`` messages, offsets committed after each file,
* raw kafka-python consume of the same topic (``subscribe`` + ``poll`` + a commit per batch,
  no sink at all: the limit),

each with its own consumer group, and it prints both rates and their ratio.
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from typing import Any

# This file is called kafka.py: drop its own folder from the path so ``import kafka`` finds
# kafka-python, not this script; the repo root goes first so ``demo`` and ``tests`` import.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _HERE]
sys.path.insert(0, os.path.dirname(_HERE))

SIZE = 100
BATCH = 10_000
PARTITIONS = 3
#: Client settings every contender uses (kafka-python names; translated for librdkafka).
SETTINGS: dict[str, Any] = {"linger_ms": 5, "batch_size": 256 * 1024}


def block_for(bootstrap: str) -> Any:
    from flowport_kafka import KafkaConnection

    return KafkaConnection(
        bootstrap_servers=bootstrap, client_id="flowport-bench", extra_settings=SETTINGS
    )


def new_topic(block: Any) -> str:
    from flowport_kafka import create_topics

    name = f"bench-{uuid.uuid4().hex[:10]}"
    create_topics.fn(block, name, partitions=PARTITIONS)
    return name


# --------------------------------------------------------------------------- produce


def produce_flowport(block: Any, topic: str, values: list[bytes]) -> Callable[[], None]:
    from flowport_kafka import produce

    result = produce.fn(block, topic, values)  # builds the block's producer on first use
    assert result.count == len(values)
    return lambda: block.reset_client("producer")  # the next round builds a fresh one


def produce_raw(block: Any, topic: str, values: list[bytes]) -> Callable[[], None]:
    from kafka import KafkaProducer

    producer = KafkaProducer(**block.client_config("producer"))
    send = producer.send
    for value in values:
        send(topic, value)
    producer.flush()
    return producer.close


def confluent_config(block: Any) -> dict[str, Any]:
    return {
        "bootstrap.servers": block.bootstrap_servers,
        "acks": "all",
        "enable.idempotence": True,
        "linger.ms": SETTINGS["linger_ms"],
        "batch.size": SETTINGS["batch_size"],
        "client.id": "flowport-bench-confluent",
    }


def produce_confluent(block: Any, topic: str, values: list[bytes]) -> Callable[[], None]:
    from confluent_kafka import Producer

    producer = Producer(confluent_config(block))
    errors: list[Any] = []

    def report(err: Any, msg: Any) -> None:
        if err is not None:
            errors.append(err)

    produce = producer.produce
    for i, value in enumerate(values):
        while True:
            try:
                produce(topic, value, on_delivery=report)
                break
            except BufferError:
                producer.poll(0.05)
        if i % 10_000 == 0:
            producer.poll(0)
    assert producer.flush(120) == 0 and not errors, errors[:3]
    return lambda: None


# --------------------------------------------------------------------------- consume


def consume_flowport(block: Any, topic: str, n: int) -> None:
    from flowport_kafka import consume_into

    result = consume_into.fn(
        block, topic, f"g-{uuid.uuid4().hex[:8]}", lambda b: None, batch_size=BATCH
    )
    assert result.messages == n, result.messages


def consume_raw(block: Any, topic: str, n: int) -> None:
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(
        **block.client_config(
            "consumer",
            group_id=f"g-{uuid.uuid4().hex[:8]}",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
    )
    try:
        consumer.subscribe([topic])
        got = 0
        while got < n:
            polled = consumer.poll(timeout_ms=1000, max_records=BATCH)
            for records in polled.values():
                got += len(records)
            if polled:
                consumer.commit()
        assert got == n, got
    finally:
        consumer.close(autocommit=False)


def consume_confluent(block: Any, topic: str, n: int) -> None:
    from confluent_kafka import Consumer

    consumer = Consumer(
        {
            "bootstrap.servers": block.bootstrap_servers,
            "group.id": f"g-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    try:
        consumer.subscribe([topic])
        got = 0
        while got < n:
            msgs = consumer.consume(num_messages=BATCH, timeout=1.0)
            for msg in msgs:
                if msg.error() is None:
                    got += 1
            if msgs:
                consumer.commit(asynchronous=False)
        assert got == n, got
    finally:
        consumer.close()


# --------------------------------------------------------------------------- transfer

TRANSFER_BATCH = 100_000


def transfer_flowport(block: Any, topic: str, n: int, store: Any) -> None:
    from flowport_kafka import consume_to_store

    group = f"g-{uuid.uuid4().hex[:8]}"
    result = consume_to_store.fn(block, topic, group, store, group, max_messages=TRANSFER_BATCH)
    assert result.messages == n, result.messages


def transfer_main(args: argparse.Namespace) -> int:
    from flowport_s3 import AwsCredentials, S3Bucket, S3Store
    from flowport_testing.services import Harness, running

    n = args.messages or 200_000
    rounds = args.rounds or 2
    harness = Harness()
    reused = {name: running(name) is not None for name in ("kafka", "s3")}
    services = harness.up(["kafka", "s3"])
    kafka, s3 = services["kafka"], services["s3"]
    block = block_for(kafka.bootstrap_servers)
    bucket = f"bench-{uuid.uuid4().hex[:8]}"
    s3.client().create_bucket(Bucket=bucket)  # type: ignore[attr-defined]
    creds = AwsCredentials(
        aws_access_key_id=s3.access_key,  # type: ignore[attr-defined]
        aws_secret_access_key=s3.secret_key,  # type: ignore[attr-defined]
        region_name=s3.region,  # type: ignore[attr-defined]
        endpoint_url=s3.endpoint_url,  # type: ignore[attr-defined]
        addressing_style="path",
    )
    store = S3Store(S3Bucket(bucket_name=bucket, credentials=creds))
    values = [os.urandom(SIZE // 2).hex().encode()[:SIZE] for _ in range(1000)] * (n // 1000)
    values += values[: n - len(values)]
    contenders: dict[str, Callable[[str], Any]] = {
        "raw kafka-python consume": lambda t: consume_raw(block, t, n),
        "flowport Kafka->Parquet/S3": lambda t: transfer_flowport(block, t, n, store),
    }
    rates: dict[str, list[float]] = {name: [] for name in contenders}
    try:
        topic = new_topic(block)
        produce_raw(block, topic, values)()
        order = list(contenders)
        for round_no in range(rounds):
            for name in order:
                took = timed(functools.partial(contenders[name], topic))
                rates[name].append(n / took)
                print(f"  round {round_no + 1} {name}: {took:.1f}s", flush=True)
            order = order[1:] + order[:1]
    finally:
        block.close()
        harness.down([name for name, kept in reused.items() if not kept])
    raw = statistics.median(rates["raw kafka-python consume"])
    print(
        f"\nKafka -> Parquet on S3, median of {rounds} rounds, {n:,} messages of {SIZE} bytes, "
        f"{PARTITIONS} partitions, {TRANSFER_BATCH:,} messages per file"
    )
    print(f"{'contender':<28} {'msg/s':>10} {'MB/s':>7} {'ratio':>6}")
    for name, samples in rates.items():
        rate = statistics.median(samples)
        print(f"{name:<28} {rate:>10,.0f} {rate * SIZE / 1e6:>7.2f} {rate / raw:>5.2f}x")
    return 0


def timed(fn: Callable[[], Any]) -> float:
    """Seconds ``fn`` took; a callable it returns (closing a producer) runs untimed after."""
    started = time.perf_counter()
    cleanup = fn()
    took = time.perf_counter() - started
    if callable(cleanup):
        cleanup()
    return took


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="50,000 messages")
    parser.add_argument("--messages", type=int, default=None)
    parser.add_argument("--rounds", type=int, default=None, help="median of N (2; 3 quick)")
    parser.add_argument(
        "--transfer", action="store_true", help="Kafka -> Parquet on S3 vs raw consume"
    )
    args = parser.parse_args()
    if args.transfer:
        return transfer_main(args)
    n = args.messages or (50_000 if args.quick else 1_000_000)
    args.rounds = args.rounds or (3 if args.quick else 2)

    from flowport_testing.services import Harness, running

    harness = Harness()
    reused = running("kafka") is not None  # a broker someone else started stays up
    kafka = harness.up(["kafka"])["kafka"]
    block = block_for(kafka.bootstrap_servers)
    values = [os.urandom(SIZE // 2).hex().encode()[:SIZE] for _ in range(1000)] * (n // 1000)
    values += values[: n - len(values)]
    assert len(values) == n and all(len(v) == SIZE for v in values[:1000])

    contenders = {
        "raw kafka-python": (produce_raw, consume_raw),
        "flowport-kafka": (produce_flowport, consume_flowport),
        "confluent-kafka": (produce_confluent, consume_confluent),
    }
    samples: dict[str, dict[str, list[float]]] = {
        name: {"produce": [], "consume": []} for name in contenders
    }
    order = list(contenders)
    try:
        for round_no in range(args.rounds):
            for name in order:
                produce_fn, consume_fn = contenders[name]
                topic = new_topic(block)
                p = timed(lambda f=produce_fn, t=topic: f(block, t, values))
                c = timed(lambda f=consume_fn, t=topic: f(block, t, n))
                samples[name]["produce"].append(n / p)
                samples[name]["consume"].append(n / c)
                print(
                    f"  round {round_no + 1} {name}: produce {p:.1f}s, consume {c:.1f}s", flush=True
                )
            order = order[1:] + order[:1]  # rotate: nobody always goes first
    finally:
        block.close()
        if not reused:
            harness.down(["kafka"])
    rows = {name: {k: statistics.median(v) for k, v in s.items()} for name, s in samples.items()}

    raw = rows["raw kafka-python"]
    print(
        f"\nKafka, median of {args.rounds} rounds, {n:,} messages of {SIZE} bytes, "
        f"{PARTITIONS} partitions, batch {BATCH:,}, linger {SETTINGS['linger_ms']} ms, "
        "idempotent, acks=all"
    )
    print(
        f"{'contender':<18} {'produce msg/s':>14} {'MB/s':>7} {'ratio':>6}   "
        f"{'consume msg/s':>14} {'MB/s':>7} {'ratio':>6}"
    )
    for name, row in rows.items():
        print(
            f"{name:<18} {row['produce']:>14,.0f} {row['produce'] * SIZE / 1e6:>7.2f} "
            f"{row['produce'] / raw['produce']:>5.2f}x   {row['consume']:>14,.0f} "
            f"{row['consume'] * SIZE / 1e6:>7.2f} {row['consume'] / raw['consume']:>5.2f}x"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
