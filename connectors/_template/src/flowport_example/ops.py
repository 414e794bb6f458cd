"""The operations: plain Python over the client, no Prefect imports, streaming where data flows."""

from __future__ import annotations

from typing import Any


def ping(client: Any) -> str:
    """One idempotent request."""
    return f"pong from {client['endpoint']}"
