"""Shared test setup: an isolated Prefect home and one Prefect test server per session."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator

import pytest

# Before Prefect is imported anywhere: a throw-away home, no analytics, quiet logs.
os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="flowport-prefect-"))
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")


@pytest.fixture(scope="session")
def prefect_server() -> Iterator[None]:
    """One Prefect test server for the whole session (starting one costs seconds here)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield
