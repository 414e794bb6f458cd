"""Per-test resources: a database or bucket of one's own, empty, and gone afterwards."""

from __future__ import annotations

import psycopg
import pytest
from botocore.exceptions import ClientError

from flowport_testing import Postgres, S3Server, fresh_bucket, fresh_database


def _databases(postgres: Postgres) -> set[str]:
    with psycopg.connect(postgres.dsn) as conn:
        return {r[0] for r in conn.execute("SELECT datname FROM pg_database").fetchall()}


def test_fresh_database_is_empty_apart_and_dropped_even_with_a_connection_open(
    postgres: Postgres,
) -> None:
    with fresh_database(postgres) as first, fresh_database(postgres) as second:
        assert first != second
        name = first.rsplit("/", 1)[1]
        assert name in _databases(postgres)
        held = psycopg.connect(first, autocommit=True)  # left open: the drop must not wait
        held.execute("CREATE TABLE t (id int)")
        with psycopg.connect(second) as conn:
            tables = conn.execute(
                "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"
            ).fetchone()
        assert tables == (0,)
    assert name not in _databases(postgres)
    with pytest.raises(psycopg.OperationalError):  # the server ended it
        held.execute("SELECT 1")


def test_fresh_bucket_is_empty_and_removed_with_its_objects(s3_server: S3Server) -> None:
    client = s3_server.client()
    with fresh_bucket(s3_server) as name:
        assert client.list_objects_v2(Bucket=name)["KeyCount"] == 0
        for i in range(3):
            client.put_object(Bucket=name, Key=f"k/{i}", Body=b"x")
        client.create_multipart_upload(Bucket=name, Key="unfinished")
    with pytest.raises(ClientError) as gone:
        client.head_bucket(Bucket=name)
    assert gone.value.response["Error"]["Code"] in {"404", "NoSuchBucket"}


def test_the_fixtures_hand_out_a_working_database_and_bucket(
    postgres_db: str, s3_bucket: str, s3_server: S3Server
) -> None:
    with psycopg.connect(postgres_db) as conn:
        assert conn.execute("SELECT current_database()").fetchone() == (
            postgres_db.rsplit("/", 1)[1],
        )
    s3_server.client().put_object(Bucket=s3_bucket, Key="a", Body=b"1")
    assert s3_server.client().get_object(Bucket=s3_bucket, Key="a")["Body"].read() == b"1"
