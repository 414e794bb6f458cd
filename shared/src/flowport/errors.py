"""Flowport's error hierarchy: every failure is either transient (retry it) or permanent (raise it).

Messages name the system, the object and the cause, e.g.
``S3 bucket 'raw-events' not found at http://127.0.0.1:7070 (HeadBucket returned 404)``.
Connectors raise these ``from`` the client's exception so the original stays chained.
"""

from __future__ import annotations

from collections.abc import Iterator


class FlowportError(Exception):
    """Base of every error flowport raises on purpose.

    ``system`` names the service ("S3", "PostgreSQL", "Kafka"); ``target`` the object
    (a bucket, a table, a topic). Both are optional so a message can stand alone.
    """

    #: Whether flowport's retry loop may try the unit again.
    transient: bool = False

    def __init__(self, message: str, *, system: str | None = None, target: str | None = None):
        self.message = message
        self.system = system
        self.target = target
        super().__init__(message)

    def __reduce__(self) -> tuple[object, ...]:
        # Keyword-only arguments do not survive the default exception pickling; task
        # runners (Dask, process pools) pickle exceptions, so keep them round-trippable.
        return (_rebuild, (type(self), self.message, dict(self.__dict__)))


def _rebuild(cls: type[FlowportError], message: str, state: dict[str, object]) -> FlowportError:
    err = cls.__new__(cls)
    Exception.__init__(err, message)
    err.__dict__.update(state)
    return err


class TransientError(FlowportError):
    """A failure that may pass if the same idempotent unit is tried again.

    ``retry_after`` (seconds) carries a server's Retry-After hint; the retry policy
    waits at least that long before the next attempt.
    """

    transient = True

    def __init__(
        self,
        message: str,
        *,
        system: str | None = None,
        target: str | None = None,
        retry_after: float | None = None,
    ):
        super().__init__(message, system=system, target=target)
        self.retry_after = retry_after


class PermanentError(FlowportError):
    """A failure that trying again cannot fix: raised at once, never retried."""


class NotFound(PermanentError):
    """The bucket, object, table or topic does not exist."""


class AuthError(PermanentError):
    """Credentials are wrong, expired or lack a permission."""


class ConfigError(PermanentError):
    """A block or option is invalid (typo in a setting, missing endpoint, ...)."""


class InvalidInput(PermanentError):
    """An argument is unsafe or malformed: a path-traversal key, a bad identifier, bad data."""


class Conflict(PermanentError):
    """A precondition failed: the object already exists, a generation or etag did not match."""


class DeliveryError(PermanentError):
    """Some items of a batch were not delivered; the message says how many and which."""


def causes(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and the exceptions it was raised ``from``, each once (a cycle ends the walk)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__


def is_permanent(exc: BaseException) -> bool:
    """True when ``exc`` is, or was raised from, a :class:`PermanentError`."""
    return any(isinstance(seen, PermanentError) for seen in causes(exc))
