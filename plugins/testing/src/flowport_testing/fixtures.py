"""Session-scoped pytest fixtures: the real services and a Prefect test server.

Installing flowport-testing loads them into every pytest run (``pytest11`` entry point
``flowport``; ``-p no:flowport`` switches them off). A service the CLI left running
(state file: alive PID and healthy) is reused and left running; otherwise the fixture
starts one and stops it at session end. A service that cannot be installed or started
raises, so the test ERRORs with the log tail: never a skip.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .fresh import fresh_bucket, fresh_database
from .services import (
    SERVICES,
    DaskCluster,
    GcsServer,
    Kafka,
    MariaDB,
    Postgres,
    S3Server,
    Service,
    Toxiproxy,
    running,
)

__all__ = [
    "dask_cluster",
    "gcs_server",
    "kafka",
    "mariadb",
    "postgres",
    "postgres_db",
    "prefect_server",
    "s3_bucket",
    "s3_server",
    "toxiproxy",
]


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


@pytest.fixture
def postgres_db(postgres: Postgres) -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test (dropped after): its libpq URL."""
    with fresh_database(postgres) as dsn:
        yield dsn


@pytest.fixture
def s3_bucket(s3_server: S3Server) -> Iterator[str]:
    """A fresh, empty bucket on the S3 server for one test (removed after): its name."""
    with fresh_bucket(s3_server) as name:
        yield name


@pytest.fixture(scope="session")
def dask_cluster() -> Iterator[DaskCluster]:
    """Dask scheduler + 2 worker processes: ``.address`` for ``DaskTaskRunner(address=...)``."""
    yield from _service("dask")  # type: ignore[misc]


@pytest.fixture(scope="session")
def prefect_server() -> Iterator[str]:
    """One Prefect test server (``prefect_test_harness``) for the session; yields its API URL.

    Flows and tasks the tests run report to it, never to your own server or Prefect Cloud.
    Starting one takes seconds, hence once per session.
    """
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield str(PREFECT_API_URL.value())
