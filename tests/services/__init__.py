"""temporary shim: use flowport_testing (``from flowport_testing.services import ...``)."""

import importlib
import sys

from flowport_testing.services import *  # noqa: F403
from flowport_testing.services import __all__, _names  # noqa: F401

for _m in (
    "base",
    "chromium",
    "dask",
    "gcs",
    "kafka",
    "mariadb",
    "postgres",
    "s3",
    "toxiproxy",
    "versions",
):
    sys.modules[f"{__name__}.{_m}"] = globals()[_m] = importlib.import_module(
        f"flowport_testing.services.{_m}"
    )
