"""Cross-checks with independent clients: kcat (librdkafka) and Kafka's own console tools
(the Java client from the broker's jars) read what flowport wrote and write what flowport
reads, keys, headers and values intact."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from typing import Any

from flowport_kafka import KafkaConnection, Record, consume, produce

RECORDS = [
    Record(f"value-{i} with spaces", key=f"key-{i}", headers=[("trace", f"t{i}"), ("src", "fp")])
    for i in range(20)
]


def _produce_records(block: KafkaConnection, topic: str) -> None:
    produce.fn(block, topic, RECORDS, key_serializer="str", value_serializer="str")


def _expected() -> set[tuple[str, str, tuple[tuple[str, str], ...]]]:
    return {
        (r.key, r.value, tuple((k, v) for k, v in r.headers))  # type: ignore[union-attr]
        for r in RECORDS
    }


def test_kcat_reads_what_flowport_wrote(
    kafka: Any, kafka_block: KafkaConnection, make_topic: Callable[..., str], kcat: str
) -> None:
    topic = make_topic(3)
    _produce_records(kafka_block, topic)
    out = subprocess.run(
        [
            kcat,
            "-C",
            "-b",
            kafka.bootstrap_servers,
            "-t",
            topic,
            "-o",
            "beginning",
            "-e",
            "-J",
            "-q",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    seen = set()
    for line in out.splitlines():
        msg = json.loads(line)
        headers = msg.get("headers") or []
        pairs = tuple(zip(headers[::2], headers[1::2], strict=True))
        seen.add((msg["key"], msg["payload"], pairs))
    assert seen == _expected()


def test_flowport_reads_what_kcat_wrote(
    kafka: Any,
    kafka_block: KafkaConnection,
    make_topic: Callable[..., str],
    group: str,
    kcat: str,
) -> None:
    topic = make_topic(2)
    lines = "".join(f"k{i}|payload {i}\n" for i in range(15))
    subprocess.run(
        [
            kcat,
            "-P",
            "-b",
            kafka.bootstrap_servers,
            "-t",
            topic,
            "-K",
            "|",
            "-H",
            "origin=kcat",
            "-H",
            "bin=\x01\x02",
        ],
        input=lines,
        text=True,
        timeout=60,
        check=True,
    )
    batch = consume.fn(kafka_block, topic, group, key_deserializer="str", value_deserializer="str")
    got = {(m.key, m.value, m.headers) for m in batch}
    assert got == {
        (f"k{i}", f"payload {i}", (("origin", b"kcat"), ("bin", b"\x01\x02"))) for i in range(15)
    }


def test_kafka_console_consumer_reads_what_flowport_wrote(
    kafka: Any, kafka_block: KafkaConnection, make_topic: Callable[..., str]
) -> None:
    topic = make_topic(2)
    _produce_records(kafka_block, topic)
    proc = kafka.run_tool(
        "org.apache.kafka.tools.consumer.ConsoleConsumer",
        [
            "--bootstrap-server",
            kafka.bootstrap_servers,
            "--topic",
            topic,
            "--from-beginning",
            "--max-messages",
            str(len(RECORDS)),
            "--timeout-ms",
            "60000",
            "--formatter-property",
            "print.key=true",
            "--formatter-property",
            "print.headers=true",
            "--formatter-property",
            "print.partition=true",
        ],
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    seen = set()
    for line in proc.stdout.splitlines():
        if not line.startswith("Partition:"):
            continue  # the tool's own log lines share stdout
        _, headers, key, value = line.split("\t", 3)
        pairs = tuple(tuple(h.split(":", 1)) for h in headers.split(","))
        seen.add((key, value, pairs))
    assert seen == _expected()


def test_flowport_reads_what_kafka_console_producer_wrote(
    kafka: Any, kafka_block: KafkaConnection, make_topic: Callable[..., str], group: str
) -> None:
    topic = make_topic(2)
    lines = "".join(f"origin:java,n:{i}\tk{i}|v {i}\n" for i in range(10))
    proc = kafka.run_tool(
        "org.apache.kafka.tools.ConsoleProducer",
        [
            "--bootstrap-server",
            kafka.bootstrap_servers,
            "--topic",
            topic,
            "--reader-property",
            "parse.key=true",
            "--reader-property",
            "parse.headers=true",
            "--reader-property",
            "key.separator=|",
        ],
        input=lines,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    batch = consume.fn(kafka_block, topic, group, key_deserializer="str", value_deserializer="str")
    got = {(m.key, m.value, m.headers) for m in batch}
    assert got == {
        (f"k{i}", f"v {i}", (("origin", b"java"), ("n", str(i).encode()))) for i in range(10)
    }
