"""Settings from the environment (``FLOWPORT_METRICS_*``), read when the exporter starts."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

#: Prefect's API listens on 4200 and its client metrics on 4201; flowport's take the next.
DEFAULT_PORT = 4202


class MetricsSettings(BaseSettings):
    """``FLOWPORT_METRICS_PORT``, ``_ADDR``, ``_SERVE`` and ``_ARTIFACT``."""

    model_config = SettingsConfigDict(env_prefix="FLOWPORT_METRICS_", extra="ignore")

    port: int = Field(DEFAULT_PORT, ge=0, le=65535)
    """Port of the ``/metrics`` endpoint; 0 lets the OS pick a free one (logged)."""
    # All interfaces, as Prometheus exporters do (the scraper runs elsewhere); the metrics
    # carry task and connector names and counts, never a secret.
    addr: str = "0.0.0.0"  # noqa: S104
    """Interface to listen on (``127.0.0.1``: this host only)."""
    serve: bool = True
    """False: count, but serve nothing (the application already exposes the default registry)."""
    artifact: bool = True
    """False: no summary artifact per flow run."""
