"""Prefect Blocks: credentials and configuration; clients built lazily per process."""

from __future__ import annotations

from typing import Any

from prefect.blocks.core import Block
from pydantic import Field, SecretStr

from flowport.blocks import BLOCK_CONFIG, LazyClients, docs_url, install_hint, logo_url
from flowport.secrets import reveal


class ExampleConnection(LazyClients, Block):
    """Where Example lives and how to authenticate."""

    _block_type_slug = "flowport-example-connection"
    _block_type_name = "Flowport Example Connection"
    # The catalog entry: a logo shipped as package data (logo.svg, published by the docs
    # site), a documentation page, a description with the install line, a code example.
    _logo_url = logo_url("flowport_example")
    _documentation_url = docs_url("connectors/example/")
    _description = (
        f"Where Example lives and how to authenticate. {install_hint('flowport-example')}"
    )
    _code_example = """
    ```python
    from prefect import flow

    from flowport_example import ExampleConnection, ping

    ExampleConnection(endpoint="https://example.internal", token="...").save("example")


    @flow
    def check():
        ping(ExampleConnection.load("example"))
    ```
    """

    model_config = BLOCK_CONFIG  # human field titles ("API token", not "Token")

    endpoint: str = Field(title="Endpoint URL", description="Base URL of the Example service.")
    token: SecretStr | None = Field(
        default=None, title="API token", description="API token (kept secret)."
    )

    def client(self) -> Any:
        """The client of this process, created on first use."""
        return self._client(
            "main", lambda: {"endpoint": self.endpoint, "token": reveal(self.token)}
        )
