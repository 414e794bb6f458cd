"""Stage 1: orders as JSON messages on a Kafka topic, keyed by order id (so every version of
an order lands in one partition, in order)."""

from __future__ import annotations

import datetime as dt
import json
import random
from decimal import Decimal

import pyarrow as pa

from flowport_kafka import KafkaConnection, Record, produce

#: The fields of an order message, as KafkaSource parses them (and the lake stores them).
ORDER_SCHEMA = pa.schema(
    [
        ("order_id", pa.int64()),
        ("customer", pa.string()),
        ("status", pa.string()),
        ("amount", pa.decimal128(10, 2)),
        ("updated_at", pa.timestamp("us", tz="UTC")),
    ]
)
LATER_STATUSES = ("paid", "shipped", "delivered", "cancelled")


def order(order_id: int, status: str, at: dt.datetime) -> Record:
    """One version of an order; customer and amount follow from the id, so an update can
    restate the whole row (the upsert replaces every column)."""
    amount = Decimal(5 + (order_id * 7919) % 50_000 / 100).quantize(Decimal("0.01"))
    value = {
        "order_id": order_id,
        "customer": f"customer-{order_id % 37:02d}",
        "status": status,
        "amount": str(amount),
        "updated_at": at.isoformat(),
    }
    return Record(json.dumps(value).encode(), key=f"order-{order_id}")


def batch(run: int, first_id: int, new: int, updates: int) -> list[Record]:
    """Run ``run``'s messages: ``new`` orders from ``first_id``, then status changes of
    ``updates`` earlier orders (none on a first run), all stamped now."""
    rng = random.Random(run)
    now = dt.datetime.now(dt.timezone.utc)
    records = [order(i, "placed", now) for i in range(first_id, first_id + new)]
    earlier = range(1, first_id)
    for order_id in sorted(rng.sample(earlier, min(updates, len(earlier)))):
        records.append(order(order_id, rng.choice(LATER_STATUSES), now))
    return records


def produce_orders(kafka: KafkaConnection, topic: str, records: list[Record]) -> int:
    """Produce ``records`` (the flowport ``produce`` task: idempotent, every ack awaited)."""
    return produce(kafka, topic, records, key_serializer="str").count
