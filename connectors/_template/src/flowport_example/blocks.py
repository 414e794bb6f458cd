"""Prefect Blocks: credentials and configuration; clients built lazily per process."""

from __future__ import annotations

from typing import Any

from prefect.blocks.core import Block
from pydantic import Field, SecretStr

from flowport.blocks import LazyClients
from flowport.secrets import reveal


class ExampleConnection(LazyClients, Block):
    """Where Example lives and how to authenticate."""

    _block_type_slug = "flowport-example-connection"
    _block_type_name = "Flowport Example Connection"

    endpoint: str = Field(description="Base URL of the Example service.")
    token: SecretStr | None = Field(default=None, description="API token (kept secret).")

    def client(self) -> Any:
        """The client of this process, created on first use."""
        return self._client("main", lambda: {"endpoint": self.endpoint, "token": reveal(self.token)})
