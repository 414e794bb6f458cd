"""The ``/metrics`` HTTP endpoint: started once per process, however often it is asked for.

With ``PROMETHEUS_MULTIPROC_DIR`` set (prometheus_client's multiprocess mode) every process
writes its samples to files in that directory and the endpoint serves the sum over all of
them, so one port covers every worker process on the host, including runs that already exited.
"""

from __future__ import annotations

import atexit
import ipaddress
import logging
import os
import threading
from dataclasses import dataclass

from prometheus_client import REGISTRY, CollectorRegistry, start_http_server

from flowport_metrics.settings import MetricsSettings

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

_log = logging.getLogger("flowport.metrics")


def multiprocess_dir() -> str | None:
    """The shared sample directory of prometheus_client's multiprocess mode, if set."""
    return os.environ.get(MULTIPROC_ENV) or None


@dataclass(frozen=True)
class Endpoint:
    """Where this process serves its metrics (``port`` None: it does not; ``reason`` says why)."""

    port: int | None
    addr: str
    reason: str = ""

    @property
    def url(self) -> str | None:
        if self.port is None:
            return None
        host = self.addr
        if not host or ipaddress.ip_address(host).is_unspecified:  # all interfaces
            host = "127.0.0.1"
        elif ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}/metrics"


class Exporter:
    """Starts the endpoint on the first :meth:`start`; later calls return the same endpoint."""

    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        self.registry = registry
        self._lock = threading.Lock()
        self._endpoint: Endpoint | None = None

    @property
    def endpoint(self) -> Endpoint | None:
        """The endpoint of this process, once :meth:`start` ran."""
        return self._endpoint

    def start(self, port: int | None = None, addr: str | None = None) -> Endpoint:
        """Serve ``/metrics`` on ``port`` (default: settings) unless already started.

        Idempotent and thread-safe. A port already taken is not an error: the process keeps
        counting, logs why it does not serve (once) and returns an endpoint without a port.
        """
        with self._lock:
            if self._endpoint is not None:
                return self._endpoint
            settings = MetricsSettings()
            port = settings.port if port is None else port
            addr = settings.addr if addr is None else addr
            if not settings.serve:
                self._endpoint = Endpoint(None, addr, "FLOWPORT_METRICS_SERVE is off")
                return self._endpoint
            self._endpoint = self._listen(port, addr)
            return self._endpoint

    def _listen(self, port: int, addr: str) -> Endpoint:
        shared = multiprocess_dir()
        exposed = self.registry
        if shared is not None:
            from prometheus_client import multiprocess

            exposed = CollectorRegistry()
            multiprocess.MultiProcessCollector(exposed, path=shared)  # type: ignore[no-untyped-call]
        try:
            server, _thread = start_http_server(port, addr, registry=exposed)
        except OSError as exc:
            if shared is not None:
                reason = f"port {port} taken; with {MULTIPROC_ENV} the process on it serves ours"
                _log.info("flowport-metrics: %s", reason)
            else:
                reason = (
                    f"port {port} on {addr} is taken ({exc.strerror}), so this process's "
                    f"metrics are not exported; set {MULTIPROC_ENV} to a directory shared by "
                    "the processes on this host, or FLOWPORT_METRICS_PORT per process"
                )
                _log.warning("flowport-metrics: %s", reason)
            return Endpoint(None, addr, reason)
        bound = int(server.server_port)
        _log.info("flowport-metrics: serving /metrics on %s:%d", addr, bound)
        return Endpoint(bound, addr)


def mark_dead_at_exit() -> None:
    """In multiprocess mode, drop this process's live gauges from the sum when it exits."""
    if multiprocess_dir() is None:
        return
    from prometheus_client import multiprocess

    pid = os.getpid()
    atexit.register(lambda: multiprocess.mark_process_dead(pid))  # type: ignore[no-untyped-call]


#: The process-wide exporter of the default registry (what the autoloaded plugin starts).
exporter = Exporter()


def start_server(port: int | None = None, addr: str | None = None) -> Endpoint:
    """Serve the default registry's metrics now, instead of at the first flowport task."""
    return exporter.start(port, addr)
