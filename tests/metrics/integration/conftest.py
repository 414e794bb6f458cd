"""Real services from flowport-testing, and the process-wide /metrics endpoint of the plugin."""

from __future__ import annotations
