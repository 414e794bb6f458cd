"""The ``pytest11`` entry point: the fixtures, and a Prefect home of the test run's own.

Before any conftest (so before Prefect is imported) the run gets a throw-away
``PREFECT_HOME`` (unless one is set) and Prefect's analytics are switched off, so tests never
read or write your profiles. ``flowport_isolate_prefect = false`` in the pytest ini turns
this off.
"""

from __future__ import annotations

import os
import shutil
import tempfile

import pytest

from .fixtures import (  # noqa: F401  (pytest registers the fixtures it finds here)
    dask_cluster,
    gcs_server,
    kafka,
    mariadb,
    postgres,
    postgres_db,
    prefect_server,
    s3_bucket,
    s3_server,
    toxiproxy,
)

# Rich assertion messages in the contract suite that store authors' test classes inherit.
pytest.register_assert_rewrite("flowport.testing")

_made_home: str | None = None


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(
        "flowport_isolate_prefect",
        "give the run a temporary PREFECT_HOME and switch Prefect's analytics off",
        type="bool",
        default=True,
    )


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(early_config: pytest.Config) -> None:
    """Set the Prefect environment before conftests import Prefect (it reads it once)."""
    global _made_home
    if not early_config.getini("flowport_isolate_prefect"):
        return
    if "PREFECT_HOME" not in os.environ:
        _made_home = os.environ["PREFECT_HOME"] = tempfile.mkdtemp(prefix="flowport-prefect-")
    os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"


def pytest_unconfigure(config: pytest.Config) -> None:
    """Remove the temporary Prefect home this run made."""
    global _made_home
    if _made_home is not None and os.environ.get("PREFECT_HOME") == _made_home:
        shutil.rmtree(_made_home, ignore_errors=True)
        del os.environ["PREFECT_HOME"]
        _made_home = None
