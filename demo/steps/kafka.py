"""Demo step for flowport-kafka: create a topic, produce JSON orders, run an at-least-once
consume -> write -> commit pipeline into a file, and check the group's lag on the harness's
Kafka broker."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

SERVICES = ["kafka"]


def step(workdir: Path) -> str:
    """Runs inside the demo flow: prebuilt tasks against any Kafka cluster."""
    import flowport_kafka as fk

    kafka = fk.KafkaConnection(bootstrap_servers=os.environ["FLOWPORT_KAFKA_BOOTSTRAP"])
    topic, group = f"demo-orders-{uuid.uuid4().hex[:8]}", "demo-loader"
    try:
        fk.create_topics(kafka, topic, partitions=3)
        orders = [
            fk.Record(
                {"order": i, "amount": 10 * i}, key=f"customer-{i % 7}", headers={"source": "demo"}
            )
            for i in range(100)
        ]
        sent = fk.produce(kafka, topic, orders, key_serializer="str", value_serializer="json")

        out = workdir / "kafka" / "orders.jsonl"
        out.parent.mkdir(parents=True, exist_ok=True)

        def write(batch: fk.Batch) -> int:
            # the sink: if it raises, nothing of this batch is committed (at-least-once)
            with out.open("a") as fh:
                for message in batch:
                    fh.write(json.dumps(message.value) + "\n")
            return len(batch)

        loaded = fk.consume_into(
            kafka, topic, group, write, batch_size=40, value_deserializer="json"
        )
        lag = sum(row.lag for row in fk.consumer_lag(kafka, group, topic))
        (info,) = fk.describe_topics(kafka, topic)
        lines = out.read_text().splitlines()
    finally:
        fk.delete_topics(kafka, topic)
        kafka.close()
    return (
        f"kafka: {len(sent)} orders acknowledged on {info.partition_count} partitions, "
        f"{loaded.messages} consumed in {loaded.batches} committed batches into "
        f"{len(lines)} file lines, lag now {lag}"
    )
