"""S3 server: Versity S3 Gateway (``versitygw``, Apache-2.0) with the posix backend.

It checks SigV4 signatures, so a wrong secret fails as on AWS. Built once with
``go install`` into ``~/.cache/flowport/bin``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from . import versions
from .base import BIN_DIR, Service, go_install, http_status


class S3Server(Service):
    """An S3 endpoint with fixed test credentials; restart keeps the bucket directory."""

    name: ClassVar[str] = "s3"
    kind: ClassVar[str] = versions.S3_IMPL
    version = versions.VERSITYGW_VERSION
    access_key = "flowport-test"
    secret_key = "flowport-test-secret-key"  # noqa: S105  (a throw-away server on 127.0.0.1)
    region = "us-east-1"

    @property
    def binary(self) -> Path:
        return BIN_DIR / f"versitygw-{versions.VERSITYGW_VERSION}"

    @property
    def endpoint_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def data_dir(self) -> Path:
        """The posix root: one sub-directory per bucket."""
        assert self.workdir is not None
        return self.workdir / "data"

    def install(self) -> None:
        go_install(versions.VERSITYGW_MODULE, versions.VERSITYGW_VERSION, "versitygw", self.binary)

    def prepare(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)

    def command(self) -> list[str]:
        return [
            str(self.binary),
            "--access",
            self.access_key,
            "--secret",
            self.secret_key,
            "--region",
            self.region,
            "--port",
            f"{self.host}:{self.port}",
            "posix",
            str(self.data_dir),
        ]

    def popen_kwargs(self) -> dict[str, Any]:
        # versitygw reads ROOT_ACCESS_KEY / VGW_* from the environment: keep ours out of it.
        import os

        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("VGW_", "ROOT_ACCESS", "ROOT_SECRET"))
        }
        return {"env": env}

    def healthy(self) -> bool:
        # Any HTTP answer (403 for an unsigned request) means the gateway serves requests.
        return http_status(self.endpoint_url + "/") is not None

    def client(self, **kwargs: Any) -> Any:
        """A boto3 S3 client for this server (path-style addressing)."""
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=kwargs.pop("access_key", self.access_key),
            aws_secret_access_key=kwargs.pop("secret_key", self.secret_key),
            region_name=self.region,
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
            **kwargs,
        )

    def env(self) -> dict[str, str]:
        return {
            "FLOWPORT_S3_ENDPOINT": self.endpoint_url,
            "AWS_ENDPOINT_URL_S3": self.endpoint_url,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_REGION": self.region,
        }
