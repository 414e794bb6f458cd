"""A Dask cluster: one ``dask scheduler`` and ``workers`` separate ``dask worker`` processes.

Every process runs under the Python that starts the service (``sys.executable``), so workers
import what the test's environment has (flowport, its connectors, Prefect) and can run the
tasks a ``prefect_dask.DaskTaskRunner(address=...)`` sends them. Workers run without a
nanny, one thread each, each in its own process group: ``kill()``/``stop()`` take the whole
cluster down, ``kill_worker(n)`` SIGKILLs one worker as a crash would and
``start_worker(n)`` brings it back. Healthy = the scheduler reports every worker.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

from .base import (
    Service,
    ServiceError,
    free_port,
    group_alive,
    process_start_time,
    run,
    wait_until,
)

#: Installed into the harness's Python when ``distributed`` is missing there (CI provisioning).
DASK_VERSION = "2026.8.0"


def _installed(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return DASK_VERSION


def _gone(pid: int) -> Callable[[], bool]:
    """True once the process group ``pid`` has no process left."""
    return lambda: not group_alive(pid)


class DaskCluster(Service):
    """``tcp://127.0.0.1:<port>`` (``.address``) with ``workers`` workers named ``worker-<n>``."""

    name: ClassVar[str] = "dask"
    kind: ClassVar[str] = "dask.distributed"
    version = _installed("distributed")
    start_timeout: ClassVar[float] = 120.0  # two workers importing on a busy 2-core machine
    state_fields: ClassVar[tuple[str, ...]] = ("http_port", "worker_pids", "python")

    def __init__(self, port: int | None = None, workdir: str | Path | None = None) -> None:
        super().__init__(port, workdir)
        self.workers = 2
        self.threads = 1
        self.http_port = 0
        self.python = sys.executable
        #: worker number -> pid (None while it is down)
        self.worker_pids: dict[str, int | None] = {}
        self._worker_procs: dict[int, subprocess.Popen[bytes]] = {}

    @property
    def address(self) -> str:
        """The scheduler address a ``distributed.Client`` or ``DaskTaskRunner`` connects to."""
        return f"tcp://{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return self.address

    def install(self) -> None:
        if importlib.util.find_spec("distributed") is None:
            run(
                [
                    sys.executable,
                    "-m",
                    "pip",
                    "install",
                    "-q",
                    f"dask[distributed]=={DASK_VERSION}",
                ],
                "pip install dask[distributed]",
            )

    def before_spawn(self) -> None:
        if not self.http_port:
            self.http_port = free_port()

    def command(self) -> list[str]:
        return [
            self.python,
            "-m",
            "dask",
            "scheduler",
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--dashboard-address",
            f"{self.host}:{self.http_port}",
            "--no-dashboard",
        ]

    def _spawn(self) -> None:
        super()._spawn()
        for n in range(self.workers):
            self.start_worker(n, wait=False)

    # -- workers -----------------------------------------------------------------------
    def start_worker(self, n: int, wait: bool = True) -> int:
        """Start worker ``n`` (again, after ``kill_worker``) in the cluster's process group;
        with ``wait``, until the scheduler reports every worker. Returns its pid."""
        if self.pid is None or self.workdir is None:
            raise ServiceError("dask: start the scheduler before its workers")
        local = self.workdir / f"worker-{n}"
        local.mkdir(parents=True, exist_ok=True)
        cmd = [
            self.python,
            "-m",
            "dask",
            "worker",
            self.address,
            "--name",
            f"worker-{n}",
            "--host",
            self.host,
            "--nthreads",
            str(self.threads),
            "--no-nanny",
            "--dashboard-address",
            f"{self.host}:0",
            "--local-directory",
            str(local),
            "--death-timeout",
            "120",  # an orphan worker whose scheduler is gone exits
        ]
        assert self.log_path is not None
        with self.log_path.open("ab") as log:
            log.write(f"--- flowport harness: starting worker {n}: {' '.join(cmd)}\n".encode())
            log.flush()
            proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own group: kill_worker hits it alone
            )
        self._worker_procs[n] = proc
        self.worker_pids[str(n)] = proc.pid
        if wait:
            self.wait_healthy(self.start_timeout)
            self._record()
        return proc.pid

    def kill_worker(self, n: int) -> int:
        """SIGKILL worker ``n`` (a crash: no goodbye to the scheduler); returns its pid."""
        pid = self.worker_pids.get(str(n))
        if pid is None:
            raise ServiceError(f"dask: worker {n} is not running")
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
        proc = self._worker_procs.pop(n, None)
        if proc is not None:
            proc.wait(10)
        else:
            wait_until(lambda: process_start_time(pid) is None, 10, f"dask worker {n} to exit")
        self.worker_pids[str(n)] = None
        self._record()
        return pid

    def identity(self) -> dict[str, Any]:
        """The scheduler's own description (``/json/identity.json``): workers by address."""
        url = f"http://{self.host}:{self.http_port}/json/identity.json"
        with urllib.request.urlopen(url, timeout=2) as resp:
            return dict(json.loads(resp.read()))

    def worker_names(self) -> dict[str, str]:
        """Connected workers: address -> name (``worker-<n>``)."""
        return {addr: str(w.get("name")) for addr, w in self.identity()["workers"].items()}

    def healthy(self) -> bool:
        try:
            count = len(self.identity()["workers"])
        except (OSError, ValueError, KeyError) as exc:
            self.last_health_error = f"scheduler HTTP: {exc}"
            return False
        self.last_health_error = f"scheduler reports {count} of {self.workers} workers"
        return count >= self.workers

    def _workers_signal(self, sig: signal.Signals) -> None:
        for pid in self.worker_pids.values():
            if pid is not None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pid, sig)

    def _workers_gone(self) -> None:
        """SIGKILL every worker (they hold nothing to save) and wait until they are gone."""
        self._workers_signal(signal.SIGCONT)
        self._workers_signal(signal.SIGKILL)
        for proc in self._worker_procs.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(10)
        for pid in self.worker_pids.values():
            if pid is not None:
                wait_until(_gone(pid), 10, "dask workers to exit")
        self._worker_procs.clear()
        self.worker_pids = {}

    def stop(self, timeout: float = 30.0) -> None:
        self._workers_gone()
        super().stop(timeout)

    def kill(self) -> None:
        self._workers_gone()
        super().kill()

    def pause(self) -> None:
        super().pause()
        self._workers_signal(signal.SIGSTOP)

    def resume(self) -> None:
        self._workers_signal(signal.SIGCONT)
        super().resume()

    def env(self) -> dict[str, str]:
        return {"FLOWPORT_DASK_SCHEDULER": self.address}

    def wait_workers(self, count: int, timeout: float = 60.0) -> None:
        """Until the scheduler reports exactly ``count`` workers (e.g. 1 after a kill)."""

        def check() -> bool:
            try:
                return len(self.identity()["workers"]) == count
            except (OSError, ValueError, KeyError):
                return False

        deadline = time.monotonic() + timeout
        wait_until(check, max(0.0, deadline - time.monotonic()), f"{count} dask workers")
