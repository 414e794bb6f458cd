"""Fault proxy: Shopify toxiproxy server, driven over its JSON HTTP API with urllib.

``toxiproxy.proxy_for(service)`` puts a TCP proxy in front of a service; toxics
(latency, reset_peer, timeout, bandwidth) apply at once and remove themselves when used
as context managers::

    with proxy.latency(300):
        ...
"""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Any, ClassVar

from . import versions
from .base import BIN_DIR, Service, ServiceError, go_install, http_status


class Toxic:
    """One toxic on a proxy; leaving the ``with`` block removes it."""

    def __init__(self, proxy: Proxy, name: str) -> None:
        self.proxy = proxy
        self.name = name

    def remove(self) -> None:
        """Delete this toxic (no error when already gone)."""
        self.proxy.server.api(
            "DELETE", f"/proxies/{self.proxy.name}/toxics/{self.name}", missing_ok=True
        )

    def __enter__(self) -> Toxic:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()


class Proxy:
    """A toxiproxy proxy listening on ``listen`` and forwarding to ``upstream``."""

    def __init__(self, server: Toxiproxy, name: str, listen: str, upstream: str) -> None:
        self.server = server
        self.name = name
        self.listen = listen
        self.upstream = upstream

    @property
    def host(self) -> str:
        return self.listen.rsplit(":", 1)[0]

    @property
    def port(self) -> int:
        return int(self.listen.rsplit(":", 1)[1])

    def toxic(
        self, type_: str, stream: str = "downstream", toxicity: float = 1.0, **attributes: Any
    ) -> Toxic:
        """Add any toxic by type (see toxiproxy's README for types and attributes)."""
        name = f"{type_}_{stream}"
        self.server.api("DELETE", f"/proxies/{self.name}/toxics/{name}", missing_ok=True)
        self.server.api(
            "POST",
            f"/proxies/{self.name}/toxics",
            {
                "name": name,
                "type": type_,
                "stream": stream,
                "toxicity": toxicity,
                "attributes": attributes,
            },
        )
        return Toxic(self, name)

    def latency(self, ms: int, jitter: int = 0, stream: str = "downstream") -> Toxic:
        """Delay data by ``ms`` (+- ``jitter``) milliseconds."""
        return self.toxic("latency", stream, latency=ms, jitter=jitter)

    def reset_peer(self, timeout_ms: int = 0) -> Toxic:
        """Close connections with a TCP RST after ``timeout_ms`` (0 = at once)."""
        return self.toxic("reset_peer", "upstream", timeout=timeout_ms)

    def timeout(self, ms: int) -> Toxic:
        """Stop all data and close the connection after ``ms`` (0 = hang forever)."""
        return self.toxic("timeout", "upstream", timeout=ms)

    def bandwidth(self, rate_kb: int, stream: str = "downstream") -> Toxic:
        """Limit throughput to ``rate_kb`` KB/s."""
        return self.toxic("bandwidth", stream, rate=rate_kb)

    def disable(self) -> None:
        """Cut the link: close open connections and refuse new ones."""
        self.server.api("POST", f"/proxies/{self.name}", {"enabled": False})

    def enable(self) -> None:
        """Reopen the link after ``disable()``."""
        self.server.api("POST", f"/proxies/{self.name}", {"enabled": True})

    def clear(self) -> None:
        """Remove every toxic from this proxy."""
        for toxic in self.server.api("GET", f"/proxies/{self.name}/toxics") or []:
            Toxic(self, toxic["name"]).remove()

    def delete(self) -> None:
        """Remove the proxy (its listen port closes)."""
        self.server.api("DELETE", f"/proxies/{self.name}", missing_ok=True)


class Toxiproxy(Service):
    """The toxiproxy API server (``server -host 127.0.0.1 -port P``)."""

    name: ClassVar[str] = "toxiproxy"
    kind: ClassVar[str] = versions.FAULT_PROXY_IMPL
    version = versions.TOXIPROXY_VERSION

    @property
    def binary(self) -> Path:
        return BIN_DIR / f"toxiproxy-server-{versions.TOXIPROXY_VERSION}"

    @property
    def api_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def install(self) -> None:
        go_install(versions.TOXIPROXY_MODULE, versions.TOXIPROXY_VERSION, "server", self.binary)

    def command(self) -> list[str]:
        return [str(self.binary), "-host", self.host, "-port", str(self.port)]

    def healthy(self) -> bool:
        return http_status(self.api_url + "/version") == 200

    def api(self, method: str, path: str, body: Any = None, missing_ok: bool = False) -> Any:
        """One JSON call to the toxiproxy API; raise ServiceError with its answer on error."""
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(  # noqa: S310  (http://127.0.0.1)
            self.api_url + path,
            data=data,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            if missing_ok and exc.code == 404:
                return None
            raise ServiceError(
                f"toxiproxy {method} {path} -> {exc.code}: {exc.read().decode(errors='replace')}"
            ) from exc
        return json.loads(raw) if raw.strip() else None

    def proxy(self, name: str, upstream: str, listen: str | None = None) -> Proxy:
        """(Re)create proxy ``name`` to ``upstream`` ("host:port") on a free loopback port."""
        self.api("DELETE", f"/proxies/{name}", missing_ok=True)
        created = self.api(
            "POST",
            "/proxies",
            {
                "name": name,
                "listen": listen or f"{self.host}:0",
                "upstream": upstream,
                "enabled": True,
            },
        )
        return Proxy(self, name, created["listen"], upstream)

    def proxy_for(self, service: Service, name: str | None = None) -> Proxy:
        """A proxy in front of ``service``'s main port."""
        return self.proxy(name or f"{service.name}", f"{service.host}:{service.port}")

    def reset(self) -> None:
        """Enable all proxies and remove all toxics."""
        self.api("POST", "/reset")

    def env(self) -> dict[str, str]:
        return {"FLOWPORT_TOXIPROXY_URL": self.api_url}
