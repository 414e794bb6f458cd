"""Prebuilt Prefect tasks: RetryingTask subclasses and ready-made instances."""

from __future__ import annotations

from flowport.task import RetryingTask
from flowport_example import errors, ops
from flowport_example.blocks import ExampleConnection


class ExampleTask(RetryingTask):
    """Base of this connector's tasks: supplies the transient predicate, nothing else."""

    tags = ("flowport", "example")

    def is_transient(self, exc: BaseException) -> bool:
        return errors.is_transient(exc)


class Ping(ExampleTask):
    """Check that Example answers."""

    def run(self, connection: ExampleConnection) -> str:
        return self.retrying(ops.ping, connection.client())


ping = Ping()
