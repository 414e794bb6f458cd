"""Session-scoped pytest fixtures for the real services.

Load with ``pytest_plugins = ["tests.services.fixtures"]``. A service the CLI left running
(state file: alive PID and healthy) is reused and left running; otherwise the fixture
starts one and stops it at session end. A service that cannot be installed or started
raises, so the test ERRORs with the log tail: never a skip.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from . import SERVICES, GcsServer, Kafka, MariaDB, Postgres, S3Server, Service, Toxiproxy, running


def _service(name: str) -> Iterator[Service]:
    svc = running(name)
    if svc is not None:  # started by the CLI: reuse, leave it up
        yield svc
        return
    svc = SERVICES[name]()
    try:
        svc.start()
    except BaseException:
        svc.save_log()
        svc.close()
        raise
    try:
        yield svc
    finally:
        svc.close()


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    """PostgreSQL 15: ``.dsn``, ``.sqlalchemy_url``, ``.user``/``.password``/``.database``."""
    yield from _service("postgres")  # type: ignore[misc]


@pytest.fixture(scope="session")
def mariadb() -> Iterator[MariaDB]:
    """MariaDB 10.11: ``.url``, ``.sqlalchemy_url``, ``.user``/``.password``/``.database``."""
    yield from _service("mariadb")  # type: ignore[misc]


@pytest.fixture(scope="session")
def kafka() -> Iterator[Kafka]:
    """Single-node KRaft Kafka: ``.bootstrap_servers``, ``.libs_dir``, ``.run_tool()``."""
    yield from _service("kafka")  # type: ignore[misc]


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """S3 server: ``.endpoint_url``, ``.access_key``, ``.secret_key``, ``.region``."""
    yield from _service("s3")  # type: ignore[misc]


@pytest.fixture(scope="session")
def gcs_server() -> Iterator[GcsServer]:
    """fake-gcs-server: ``.endpoint_url``, ``.project``, ``.client()``."""
    yield from _service("gcs")  # type: ignore[misc]


@pytest.fixture(scope="session")
def toxiproxy() -> Iterator[Toxiproxy]:
    """toxiproxy API server: ``.proxy(name, upstream)``, ``.proxy_for(service)``."""
    yield from _service("toxiproxy")  # type: ignore[misc]
