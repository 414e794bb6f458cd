"""Stage 2: Kafka -> PostgreSQL, upserted by order id, one consumed batch per transaction;
the batch's offsets are committed to Kafka only after its transaction committed."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from demo.steps.orders import ORDER_SCHEMA
from flowport.transfer import Extract
from flowport.transfer_tasks import run_transfer
from flowport_kafka import KafkaConnection, KafkaSource
from flowport_sql import SqlDatabase, SqlTableSink

#: Message columns kept in the table (the order's fields, plus where it came from).
COLUMNS = {
    **{f: f for f in ORDER_SCHEMA.names},
    "partition": "kafka_partition",
    "offset": "kafka_offset",
}


@dataclass
class OrdersFromKafka:
    """A :class:`KafkaSource` whose batches keep only :data:`COLUMNS`, and whose mark is the
    batch's label (its offset ranges): the sink stores it with the rows, so a batch that
    reached PostgreSQL but whose offsets were not committed is recognised on the rerun (the
    ranges are pinned until the commit) and not applied twice."""

    source: KafkaSource
    uri: str = field(init=False)

    def __post_init__(self) -> None:
        self.uri = self.source.uri

    def extract(self, since: Any = None) -> Extract:
        extract = self.source.extract(since)
        batches = (
            b.select(list(COLUMNS)).rename_columns(list(COLUMNS.values())) for b in extract.batches
        )
        return Extract(batches, since, extract.label, extract.label, extract.commit)


def kafka_to_postgres(
    kafka: KafkaConnection, topic: str, group: str, db: SqlDatabase, table: str, batch: int
) -> tuple[int, int]:
    """Upsert every message not yet consumed by ``group`` into ``table`` (made from the Arrow
    schema on first use), ``batch`` messages per task run; returns (rows, batches)."""
    source = OrdersFromKafka(
        KafkaSource(
            kafka, topic, group, max_messages=batch, value_format="json", schema=ORDER_SCHEMA
        )
    )
    sink = SqlTableSink(db, table, mode="upsert", key=["order_id"])
    rows = batches = 0
    while True:
        result = run_transfer(source, sink, f"{topic}-to-postgres")
        if result.upper is None:  # nothing left to read
            return rows, batches
        rows += result.rows
        batches += 1
