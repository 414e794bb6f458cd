"""The Connector object the ``flowport.connectors`` entry point names."""

from __future__ import annotations

from flowport.plugins import Connector
from flowport_example.blocks import ExampleConnection
from flowport_example.tasks import ping


def check(block: ExampleConnection) -> str:
    """Side-effect-free connectivity check for ``flowport check example``."""
    return ping.fn(block)


connector = Connector(
    name="example",
    distribution="flowport-example",
    summary="Example connector",
    tasks={"ping": ping},
    blocks=[ExampleConnection],
    check=check,
    check_block=ExampleConnection,
)
