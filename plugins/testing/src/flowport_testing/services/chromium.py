"""Debian's ``chromium`` for the browser test: installed with the services (``install all``),
never started by the harness; Playwright launches it itself (``executable_path``)."""

from __future__ import annotations

import shutil
from pathlib import Path

from .base import apt_install

APT_PACKAGE = "chromium"
CHROMIUM = Path("/usr/bin/chromium")


def install() -> Path:
    """Install Debian's chromium once; return its executable."""
    if not CHROMIUM.exists():
        apt_install([APT_PACKAGE])
    found = shutil.which("chromium") or str(CHROMIUM)
    return Path(found)
