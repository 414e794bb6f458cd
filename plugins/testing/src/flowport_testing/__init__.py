"""flowport-testing: real services as pytest fixtures, a Prefect test server, and the
object-store contract suite.

The fixtures load by themselves (``pytest11`` entry point). In code::

    from flowport_testing import Harness, ObjectStoreContract
    services = Harness().up(["postgres", "s3"])
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .fresh import fresh_bucket, fresh_database
from .services import (
    SERVICES,
    DaskCluster,
    GcsServer,
    Harness,
    Kafka,
    MariaDB,
    Postgres,
    Proxy,
    S3Server,
    Service,
    ServiceError,
    Toxic,
    Toxiproxy,
)

if TYPE_CHECKING:
    from flowport.testing import ObjectStoreContract

__all__ = [
    "SERVICES",
    "DaskCluster",
    "GcsServer",
    "Harness",
    "Kafka",
    "MariaDB",
    "ObjectStoreContract",
    "Postgres",
    "Proxy",
    "S3Server",
    "Service",
    "ServiceError",
    "Toxic",
    "Toxiproxy",
    "fresh_bucket",
    "fresh_database",
]


def __getattr__(name: str) -> Any:
    """``ObjectStoreContract`` lives in ``flowport.testing``; imported on first use, so the
    harness CLI runs where flowport is not installed (CI provisioning)."""
    if name == "ObjectStoreContract":
        from flowport.testing import ObjectStoreContract

        return ObjectStoreContract
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
