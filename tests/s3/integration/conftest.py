"""Fixtures over the harness's real S3 server (versitygw): a fresh bucket per test."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from flowport_s3 import AwsCredentials, S3Bucket


def credentials_for(
    server: Any, *, secret: str | None = None, endpoint: str | None = None
) -> AwsCredentials:
    return AwsCredentials(
        aws_access_key_id=server.access_key,
        aws_secret_access_key=secret or server.secret_key,
        region_name=server.region,
        endpoint_url=endpoint or server.endpoint_url,
        addressing_style="path",
    )


def _empty_and_drop(client: Any, name: str) -> None:
    token: dict[str, str] = {}
    while True:
        page = client.list_objects_v2(Bucket=name, **token)
        objects = [{"Key": o["Key"]} for o in page.get("Contents", [])]
        if objects:
            client.delete_objects(Bucket=name, Delete={"Objects": objects, "Quiet": True})
        if not page.get("IsTruncated"):
            break
        token = {"ContinuationToken": page["NextContinuationToken"]}
    uploads = client.list_multipart_uploads(Bucket=name).get("Uploads", [])
    for up in uploads:
        client.abort_multipart_upload(Bucket=name, Key=up["Key"], UploadId=up["UploadId"])
    client.delete_bucket(Bucket=name)


@pytest.fixture
def raw_client(s3_server: Any) -> Any:
    """A plain boto3 client for checks behind flowport's back."""
    return s3_server.client()


@pytest.fixture
def bucket_name(s3_server: Any, raw_client: Any) -> Iterator[str]:
    name = f"t-{uuid.uuid4().hex[:20]}"
    raw_client.create_bucket(Bucket=name)
    yield name
    # A fault test may leave the server restarting; the bucket is temporary anyway.
    with contextlib.suppress(Exception):
        _empty_and_drop(s3_server.client(), name)


@pytest.fixture
def bucket(s3_server: Any, bucket_name: str) -> S3Bucket:
    """An S3Bucket block on a fresh, empty bucket."""
    return S3Bucket(bucket_name=bucket_name, credentials=credentials_for(s3_server))
