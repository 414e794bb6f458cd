"""The demo's Prefect flow: orders -> Kafka -> PostgreSQL -> Parquet on S3 and GCS -> summary.

:func:`connect` builds the blocks from the harness's environment variables (and makes the
topic and buckets); :func:`orders_pipeline` is one run of the pipeline. ``demo/pipeline.py``
starts the services and runs it twice; ``tests/flows/integration/test_pipelines.py`` runs it
against the test fixtures' servers.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass

from prefect import flow
from pydantic import SecretStr

from demo.steps import orders
from demo.steps.summary import Summary, summarise_lake
from demo.steps.to_lake import to_lake
from demo.steps.to_postgres import kafka_to_postgres
from flowport.store import ObjectStore
from flowport_gcs import GcpCredentials, GcsBucket, GcsStore
from flowport_kafka import KafkaConnection, create_topics
from flowport_s3 import AwsCredentials, S3Bucket, S3Store
from flowport_sql import SqlDatabase

#: The services the pipeline needs (names in ``flowport_testing.SERVICES``).
SERVICES = ["kafka", "postgres", "s3", "gcs"]
PARTITIONS = 3


@dataclass
class Lake:
    """Where the orders go: the blocks, and the topic, consumer group, table and buckets."""

    kafka: KafkaConnection
    db: SqlDatabase
    s3: S3Bucket
    gcs: GcsBucket
    topic: str
    group: str
    table: str

    def stores(self) -> dict[str, ObjectStore]:
        return {"s3": S3Store(self.s3), "gcs": GcsStore(self.gcs)}

    def close(self) -> None:
        self.kafka.close()
        self.db.dispose()


def connect(env: Mapping[str, str]) -> Lake:
    """Blocks for the services ``env`` describes (``flowport-services env``), a fresh
    topic and fresh buckets (setup only: flowport's tasks never create buckets)."""
    suffix = uuid.uuid4().hex[:8]
    s3 = S3Bucket(
        bucket_name=f"orders-{suffix}",
        credentials=AwsCredentials(
            aws_access_key_id=SecretStr(env["AWS_ACCESS_KEY_ID"]),
            aws_secret_access_key=SecretStr(env["AWS_SECRET_ACCESS_KEY"]),
            region_name=env.get("AWS_DEFAULT_REGION", "us-east-1"),
            endpoint_url=env["FLOWPORT_S3_ENDPOINT"],
            addressing_style="path",
        ),
    )
    s3.client().create_bucket(Bucket=s3.bucket_name)
    gcs = GcsBucket(
        bucket=f"orders-{suffix}",
        credentials=GcpCredentials(
            anonymous=True,
            endpoint=env["FLOWPORT_GCS_ENDPOINT"],
            project=env.get("GOOGLE_CLOUD_PROJECT", "flowport-demo"),
        ),
    )
    gcs.credentials.storage_client().create_bucket(gcs.bucket)
    kafka = KafkaConnection(bootstrap_servers=env["FLOWPORT_KAFKA_BOOTSTRAP"])
    topic = f"orders-{suffix}"
    create_topics.fn(kafka, topic, partitions=PARTITIONS)
    db = SqlDatabase(url=env["FLOWPORT_PG_SQLALCHEMY_URL"])
    return Lake(kafka, db, s3, gcs, topic, f"orders-loader-{suffix}", f"orders_{suffix}")


@dataclass(frozen=True)
class RunReport:
    """One run: messages produced, rows upserted (in how many batches), rows each store's
    incremental transfer moved, and the lake's summary afterwards."""

    run: int
    produced: int
    upserted: int
    batches: int
    moved: dict[str, int]
    since: str
    until: str
    summary: Summary


@flow(name="flowport-demo-orders")
def orders_pipeline(
    lake: Lake, run: int, first_id: int, new: int, updates: int, batch: int = 2_000
) -> RunReport:
    """Produce ``new`` orders from ``first_id`` and ``updates`` status changes, upsert them
    into PostgreSQL, move what changed to Parquet on S3 and GCS, summarise the lake."""
    produced = orders.produce_orders(
        lake.kafka, lake.topic, orders.batch(run, first_id, new, updates)
    )
    upserted, batches = kafka_to_postgres(
        lake.kafka, lake.topic, lake.group, lake.db, lake.table, batch
    )
    moved = to_lake(lake.db, lake.table, lake.stores())
    summary = summarise_lake(lake.stores(), lake.table, run)
    some = next(iter(moved.values()))
    return RunReport(
        run=run,
        produced=produced,
        upserted=upserted,
        batches=batches,
        moved={name: result.rows for name, result in moved.items()},
        since=str(some.lower),
        until=str(some.upper),
        summary=summary,
    )
