"""Real services from the harness, and the process-wide /metrics endpoint of the plugin."""

from __future__ import annotations

from tests.services.fixtures import *  # noqa: F403
