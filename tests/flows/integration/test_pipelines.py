"""Connectors together in real Prefect flows, against real servers.

One flow moves rows PostgreSQL -> object store -> MariaDB and announces each batch on Kafka,
committing the consumed offsets only after the load; it runs unchanged on S3 and on GCS, only
the bucket block differs (the promise of the store connectors).
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from prefect import flow

from flowport.store import ObjectStore
from flowport_gcs import GcpCredentials, GcsBucket, GcsStore
from flowport_kafka import KafkaConnection, commit, consume, create_topics, produce
from flowport_s3 import AwsCredentials, S3Bucket, S3Store
from flowport_sql import SqlDatabase, bulk_insert, execute, export_query, fetch_all, load_file

pytestmark = pytest.mark.usefixtures("prefect_server")

DDL = "CREATE TABLE {t} (id INTEGER PRIMARY KEY, name VARCHAR(100), score DOUBLE PRECISION)"
ROWS = [{"id": i, "name": f"name-{i}", "score": i / 7} for i in range(2_000)]


def _digest(rows: list[Any]) -> str:
    return hashlib.sha256(json.dumps(sorted(rows), default=str).encode()).hexdigest()


@pytest.fixture(params=["s3", "gcs"])
def store(request: pytest.FixtureRequest) -> Iterator[ObjectStore]:
    """An empty bucket on the S3 gateway or on the GCS emulator, as a flowport ObjectStore."""
    name = f"flows-{uuid.uuid4().hex[:12]}"
    if request.param == "s3":
        s3 = request.getfixturevalue("s3_server")
        s3.client().create_bucket(Bucket=name)
        creds = AwsCredentials(
            aws_access_key_id=s3.access_key,
            aws_secret_access_key=s3.secret_key,
            region_name=s3.region,
            endpoint_url=s3.endpoint_url,
            addressing_style="path",
        )
        yield S3Store(S3Bucket(bucket_name=name, credentials=creds))
    else:
        gcs = request.getfixturevalue("gcs_server")
        gcs.client().create_bucket(name)
        creds = GcpCredentials(anonymous=True, endpoint=gcs.endpoint_url, project=gcs.project)
        yield GcsStore(GcsBucket(bucket=name, credentials=creds))


def test_postgres_to_store_to_mariadb_with_kafka_commit_after_load(
    store: ObjectStore, postgres: Any, mariadb: Any, kafka: Any
) -> None:
    source = SqlDatabase(url=postgres.sqlalchemy_url)
    target = SqlDatabase(url=mariadb.sqlalchemy_url)
    broker = KafkaConnection(bootstrap_servers=kafka.bootstrap_servers)
    table = f"orders_{uuid.uuid4().hex[:8]}"
    topic, group = f"loads-{uuid.uuid4().hex[:8]}", f"loader-{uuid.uuid4().hex[:8]}"

    @flow
    def pipeline() -> tuple[int, int, int]:
        execute(source, DDL.format(t=table))
        execute(target, DDL.format(t=table))
        bulk_insert(source, table, ROWS)
        exported = export_query(source, f"SELECT id, name, score FROM {table}", store, "o.csv")
        create_topics(broker, topic)
        note = {"key": "o.csv", "rows": exported["rows"]}
        produce(broker, topic, [note], value_serializer="json")
        batch = consume(broker, topic, group, max_messages=10, value_deserializer="json")
        loaded = sum(load_file(target, store, m.value["key"], table) for m in batch.messages)
        commit(broker, batch)  # only after the load succeeded: at-least-once
        again = consume(broker, topic, group, max_messages=10, max_wait=2.0)
        return exported["rows"], loaded, len(again.messages)

    try:
        exported, loaded, redelivered = pipeline()
        assert (exported, loaded, redelivered) == (len(ROWS), len(ROWS), 0)
        got = fetch_all.fn(target, f"SELECT id, name, score FROM {table}", as_dicts=False)
        assert _digest([[r[0], r[1], round(r[2], 9)] for r in got]) == _digest(
            [[r["id"], r["name"], round(r["score"], 9)] for r in ROWS]
        )
    finally:
        for db in (source, target):
            execute.fn(db, f"DROP TABLE IF EXISTS {table}")
            db.dispose()
        broker.close()
