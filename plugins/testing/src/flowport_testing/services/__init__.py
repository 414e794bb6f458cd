"""Real-service test harness: PostgreSQL, MariaDB, Kafka, an S3 server, a GCS emulator and
toxiproxy, installed into ``~/.cache/flowport`` and run on free 127.0.0.1 ports.

    from flowport_testing.services import Harness
    services = Harness().up(["kafka", "s3"])
    services["kafka"].bootstrap_servers

Pytest fixtures live in ``flowport_testing.fixtures`` (loaded by the ``pytest11`` entry point);
the CLI is ``python -m flowport_testing`` (or ``flowport-services``).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Any

from . import chromium
from .base import CACHE_DIR, STATE_FILE, Service, ServiceError, free_port, read_state
from .dask import DaskCluster
from .gcs import GcsServer
from .kafka import Kafka
from .mariadb import MariaDB
from .postgres import Postgres
from .s3 import S3Server
from .toxiproxy import Proxy, Toxic, Toxiproxy

SERVICES: dict[str, type[Service]] = {
    cls.name: cls for cls in (Postgres, MariaDB, Kafka, S3Server, GcsServer, Toxiproxy, DaskCluster)
}
#: Installed with the services by ``install`` (``all`` included) but never started: tools.
TOOLS: dict[str, Any] = {"chromium": chromium.install}

__all__ = [
    "CACHE_DIR",
    "SERVICES",
    "STATE_FILE",
    "DaskCluster",
    "GcsServer",
    "Harness",
    "Kafka",
    "MariaDB",
    "Postgres",
    "Proxy",
    "S3Server",
    "Service",
    "ServiceError",
    "Toxic",
    "Toxiproxy",
    "free_port",
    "get",
    "running",
]


def _names(names: Iterable[str] | str) -> list[str]:
    out = list(SERVICES) if names in ("all", ["all"], ("all",)) else list(names)
    unknown = [n for n in out if n not in SERVICES]
    if unknown:
        raise ServiceError(f"unknown service(s) {unknown}; known: {', '.join(SERVICES)}")
    return out


def running(name: str) -> Service | None:
    """The service the state file says is up, if its PID is alive and it answers health."""
    data = read_state().get(name)
    if not data:
        return None
    try:
        svc = SERVICES[name].from_state(data)
    except (KeyError, TypeError):
        return None
    if svc.version != SERVICES[name]().version:  # e.g. FLOWPORT_KAFKA_VERSION asks another
        return None
    return svc if svc.is_running() and svc.healthy() else None


def get(name: str, **options: Any) -> Service:
    """A running service from the state file, else a new (not yet started) one."""
    _names([name])
    return running(name) or SERVICES[name](**options)


def _parallel(names: list[str], action: Any) -> dict[str, Any]:
    results: dict[str, Any] = {}
    errors: dict[str, BaseException] = {}

    def work(name: str) -> None:
        try:
            results[name] = action(name)
        except BaseException as exc:
            errors[name] = exc

    threads = [threading.Thread(target=work, args=(n,), name=f"flowport-{n}") for n in names]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise ServiceError("\n\n".join(f"[{n}] {e}" for n, e in errors.items()))
    return results


class Harness:
    """Installs and starts several services in parallel threads.

    With ``persist=True`` (the CLI) started services are written to the state file so
    other processes (``down``, ``status``, ``env``, pytest fixtures) find and reuse them.
    """

    def __init__(self, persist: bool = False) -> None:
        self.persist = persist
        self.services: dict[str, Service] = {}
        self.started: set[str] = set()  # names this Harness started (not reused)

    def install(self, names: Iterable[str] | str = "all") -> None:
        """Install/cache without starting (CI provisioning); ``all`` includes the TOOLS."""
        every = names in ("all", ["all"], ("all",))
        wanted = [*SERVICES, *TOOLS] if every else list(names)
        tools = [n for n in wanted if n in TOOLS]
        services = _names([n for n in wanted if n not in TOOLS])
        _parallel(
            [*services, *tools], lambda n: TOOLS[n]() if n in TOOLS else SERVICES[n]().install()
        )

    def up(self, names: Iterable[str] | str = "all", **options: Any) -> dict[str, Service]:
        """Start (or reuse, when already up) the named services; return them by name."""

        def start(name: str) -> Service:
            svc = running(name)
            if svc is None:
                svc = SERVICES[name](**options.get(name, {}))
                svc.persist = self.persist
                try:
                    svc.start()
                except BaseException:
                    svc.save_log()  # the temp dir goes, the whole log stays for CI
                    svc.close()
                    raise
                self.started.add(name)
            self.services[name] = svc
            return svc

        return _parallel(_names(names), start)

    def down(self, names: Iterable[str] | str | None = None) -> None:
        """Stop the services this Harness started (reused ones stay up), or the named ones."""
        if names is None:
            targets = [svc for name, svc in self.services.items() if name in self.started]
        else:
            targets = []
            for name in _names(names):
                svc = self.services.get(name)
                if svc is None and name in read_state():
                    svc = SERVICES[name].from_state(read_state()[name])
                if svc is not None:
                    targets.append(svc)
        _parallel(
            [s.name for s in targets], lambda n: next(s for s in targets if s.name == n).close()
        )
        for svc in targets:
            self.services.pop(svc.name, None)
            self.started.discard(svc.name)
