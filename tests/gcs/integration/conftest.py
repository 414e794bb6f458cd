"""Fixtures over the harness's fake-gcs-server: a fresh bucket and block per test."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import SecretStr

from flowport_gcs import GcpCredentials, GcsBucket
from tests.gcs.keys import throwaway_service_account


def make_block(endpoint: str, bucket: str, project: str, **options: Any) -> GcsBucket:
    """A block for the emulator: anonymous requests, a throw-away key only for signing."""
    return GcsBucket(
        bucket=bucket,
        credentials=GcpCredentials(
            anonymous=True,
            endpoint=endpoint,
            project=project,
            service_account_info=SecretStr(throwaway_service_account(project)),
        ),
        **options,
    )


@pytest.fixture
def bucket_name(gcs_server: Any) -> Iterator[str]:
    """A new, empty bucket on the emulator."""
    name = f"fp-{uuid.uuid4().hex[:16]}"
    gcs_server.client().create_bucket(name)
    yield name


@pytest.fixture
def gcs_block(gcs_server: Any, bucket_name: str) -> GcsBucket:
    """Small chunks so ordinary tests cross the resumable path."""
    return make_block(
        gcs_server.endpoint_url,
        bucket_name,
        gcs_server.project,
        chunk_size=1024 * 1024,
        simple_upload_limit=512 * 1024,
    )
