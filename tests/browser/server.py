"""A real Prefect server for the browser test: ``prefect server start`` on a free loopback
port, in its own process group, with a temporary PREFECT_HOME and analytics off."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

from flowport_testing.services import free_port

HOST = "127.0.0.1"


@dataclass(frozen=True)
class PrefectServer:
    """A running server: ``url`` serves the UI, ``api_url`` the REST API."""

    url: str
    home: Path
    log: Path

    @property
    def api_url(self) -> str:
        return f"{self.url}/api"


def _healthy(api_url: str) -> bool:
    with suppress(OSError), urllib.request.urlopen(f"{api_url}/health", timeout=2) as response:
        return bool(response.status == 200)
    return False


@contextmanager
def prefect_server(timeout: float = 180.0) -> Iterator[PrefectServer]:
    """Start ``prefect server start``, wait until ``/api/health`` answers, stop it after."""
    port = free_port(HOST)
    with tempfile.TemporaryDirectory(prefix="flowport-browser-prefect-") as tmp:
        home = Path(tmp)
        url = f"http://{HOST}:{port}"
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")},
            "PREFECT_HOME": str(home),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_SERVER_API_HOST": HOST,
            "PREFECT_SERVER_API_PORT": str(port),
            "PREFECT_UI_API_URL": f"{url}/api",
            "PREFECT_UI_URL": url,
            "PREFECT_LOGGING_LEVEL": "WARNING",
        }
        log = home / "server.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "prefect",
                    "server",
                    "start",
                    "--host",
                    HOST,
                    "--port",
                    str(port),
                ],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: stopped as a whole below
            )
        try:
            deadline = time.monotonic() + timeout
            while not _healthy(f"{url}/api"):
                if proc.poll() is not None or time.monotonic() > deadline:
                    tail = log.read_text(errors="replace")[-3000:]
                    raise RuntimeError(f"prefect server did not start on {url}:\n{tail}")
                time.sleep(0.5)
            yield PrefectServer(url=url, home=home, log=log)
        finally:
            with suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                with suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
