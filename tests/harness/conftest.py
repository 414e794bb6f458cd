"""The harness's own tests use the service fixtures (imported, so this works in any conftest)."""

from tests.services.fixtures import (  # noqa: F401
    gcs_server,
    kafka,
    mariadb,
    postgres,
    s3_server,
    toxiproxy,
)
