"""Fixtures over the harness's real Kafka broker: a block, fresh topics, a raw admin client."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from kafka import KafkaAdminClient

from flowport_kafka import KafkaConnection


def block_for(bootstrap: str, **fields: Any) -> KafkaConnection:
    return KafkaConnection(bootstrap_servers=bootstrap, client_id="flowport-tests", **fields)


@pytest.fixture
def kafka_block(kafka: Any) -> Iterator[KafkaConnection]:
    """A block on the harness broker; its clients are closed after the test."""
    block = block_for(kafka.bootstrap_servers)
    yield block
    block.close()


@pytest.fixture
def raw_admin(kafka: Any) -> Iterator[KafkaAdminClient]:
    """A plain kafka-python admin client for checks behind flowport's back."""
    admin = KafkaAdminClient(bootstrap_servers=kafka.bootstrap_servers)
    yield admin
    admin.close()


@pytest.fixture
def make_topic(kafka: Any) -> Iterator[Callable[..., str]]:
    """``make_topic(partitions=3)`` -> a fresh topic name, deleted after the test."""
    made: list[str] = []

    def make(partitions: int = 3) -> str:
        name = f"t-{uuid.uuid4().hex[:12]}"
        admin = KafkaAdminClient(bootstrap_servers=kafka.bootstrap_servers)
        try:
            admin.create_topics(
                {name: {"num_partitions": partitions, "replication_factor": 1}},
                wait_for_metadata=True,
            )
        finally:
            admin.close()
        made.append(name)
        return name

    yield make
    if made:
        admin = KafkaAdminClient(bootstrap_servers=kafka.bootstrap_servers)
        try:
            admin.delete_topics(made, raise_errors=False)
        finally:
            admin.close()


@pytest.fixture
def group() -> str:
    return f"g-{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="session")
def kcat() -> str:
    """The kcat binary (Debian package), installed on first use like the harness's services."""
    found = shutil.which("kcat")
    if found is None:
        from flowport_testing.services.base import apt_install

        apt_install(["kcat"])
        found = shutil.which("kcat")
    assert found is not None, "kcat is not installed and apt-get install kcat did not add it"
    return found
