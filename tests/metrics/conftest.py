"""flowport-metrics tests: the autoloaded plugin serves on a free loopback port, never 4202."""

from __future__ import annotations

import os

os.environ.setdefault("FLOWPORT_METRICS_PORT", "0")
os.environ.setdefault("FLOWPORT_METRICS_ADDR", "127.0.0.1")
