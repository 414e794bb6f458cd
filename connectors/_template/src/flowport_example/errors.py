"""Which Example errors are transient, and clear messages for the permanent ones."""

from __future__ import annotations

from flowport.errors import FlowportError, NotFound, TransientError

SYSTEM = "Example"


def is_transient(exc: BaseException) -> bool:
    """Connection drops and timeouts pass on retry; everything else is permanent."""
    return isinstance(exc, ConnectionError | TimeoutError)


def translate(exc: BaseException, target: str) -> FlowportError:
    """A flowport error naming the system, ``target`` and the cause; raise it ``from exc``."""
    if is_transient(exc):
        return TransientError(f"{SYSTEM} {target}: {exc}", system=SYSTEM, target=target)
    return NotFound(f"{SYSTEM} {target} not found ({exc})", system=SYSTEM, target=target)
