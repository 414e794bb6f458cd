"""flowport-example: Prefect tasks for Example.

    from prefect import flow
    from flowport_example import ExampleConnection, ping

    @flow
    def check():
        return ping(ExampleConnection(endpoint="http://127.0.0.1:9000"))
"""

from flowport_example.blocks import ExampleConnection
from flowport_example.tasks import Ping, ping

__all__ = ["ExampleConnection", "Ping", "ping"]
