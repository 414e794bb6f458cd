"""Per-test resources on the session's servers: a fresh PostgreSQL database, a fresh bucket.

Servers start once per session; tests stay apart by each getting its own database or bucket,
removed afterwards. Context managers (any scope) behind the ``postgres_db`` and ``s3_bucket``
fixtures. They need the ``clients`` extra (psycopg, boto3).
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator

from .services import Postgres, S3Server


@contextlib.contextmanager
def fresh_database(postgres: Postgres) -> Iterator[str]:
    """Create an empty database on ``postgres``; yield its libpq URL; drop it (connections
    still open included) on exit."""
    import psycopg

    name = f"test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres.dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield postgres.dsn.rsplit("/", 1)[0] + "/" + name
    finally:
        with psycopg.connect(postgres.dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.contextmanager
def fresh_bucket(s3_server: S3Server) -> Iterator[str]:
    """Create an empty bucket on ``s3_server``; yield its name; delete what is in it (every
    page, aborted multipart uploads too) and the bucket on exit."""
    client = s3_server.client()
    name = f"test-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=name)
    try:
        yield name
    finally:
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=name):
            keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
            if keys:
                client.delete_objects(Bucket=name, Delete={"Objects": keys, "Quiet": True})
        uploads = client.list_multipart_uploads(Bucket=name).get("Uploads", [])
        for up in uploads:
            client.abort_multipart_upload(Bucket=name, Key=up["Key"], UploadId=up["UploadId"])
        client.delete_bucket(Bucket=name)
