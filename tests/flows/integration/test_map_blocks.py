"""``.map()`` over real connector blocks (issue 13): blocks and policies are passed whole."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from prefect import flow

from flowport import RetryPolicy
from flowport_s3 import AwsCredentials, S3Bucket, exists
from flowport_sql import SqlDatabase, fetch_one

pytestmark = pytest.mark.usefixtures("prefect_server")


def test_fetch_one_map_over_queries_with_database_and_policy(tmp_path: Path) -> None:
    db = SqlDatabase(url=f"sqlite:///{tmp_path / 'm.db'}")
    # As many queries as the block has fields: this used to hand each run a (field, value) pair.
    queries = [f"SELECT {i} AS n" for i in range(len(SqlDatabase.model_fields))]
    policy = RetryPolicy(attempts=2, initial_delay=0)

    @flow
    def mapped() -> list[int]:
        futures = fetch_one.map(db, queries, retry_policy=policy)
        return [f.result()["n"] for f in futures]

    assert mapped() == list(range(len(queries)))


def test_store_task_map_over_keys_with_bucket_block(s3_server: Any) -> None:
    name = f"map-{uuid.uuid4().hex[:12]}"
    s3_server.client().create_bucket(Bucket=name)
    s3_server.client().put_object(Bucket=name, Key="b", Body=b"x")
    bucket = S3Bucket(
        bucket_name=name,
        credentials=AwsCredentials(
            aws_access_key_id=s3_server.access_key,
            aws_secret_access_key=s3_server.secret_key,
            region_name=s3_server.region,
            endpoint_url=s3_server.endpoint_url,
            addressing_style="path",
        ),
    )

    @flow
    def mapped() -> list[bool]:
        return [f.result() for f in exists.map(bucket, ["a", "b", "c"])]

    assert mapped() == [False, True, False]
