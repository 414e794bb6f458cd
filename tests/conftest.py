"""Shared test setup. flowport-testing (pytest11 plugin) gives every run a throw-away Prefect
home with analytics off, the ``prefect_server`` session fixture and the service fixtures."""

from __future__ import annotations

import os

# Before Prefect is imported anywhere: quiet logs, and time for a test server on 2 busy cores.
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
