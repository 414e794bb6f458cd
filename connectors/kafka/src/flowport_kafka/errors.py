"""Which Kafka errors are transient, and clear messages for the permanent ones.

Transient (retried by flowport's loop around an idempotent unit): every kafka-python error with
``retriable = True`` (leader changes, request timeouts, coordinator moves, ``KafkaTimeoutError``
when no broker answers a bootstrap), ``NoBrokersAvailable`` where the client has it, and dropped
sockets. Permanent (raised at once): unknown topics (flowport never relies on auto-create),
authorization and SASL failures, ``MessageSizeTooLarge``, serialization errors, bad config.
"""

from __future__ import annotations

from kafka import errors as kerr

from flowport.errors import (
    AuthError,
    ConfigError,
    Conflict,
    FlowportError,
    InvalidInput,
    NotFound,
    PermanentError,
    TransientError,
)
from flowport.secrets import redact

SYSTEM = "Kafka"

# kafka-python < 3 raised NoBrokersAvailable; 3.x raises KafkaTimeoutError("Unable to bootstrap").
_NO_BROKERS: tuple[type[BaseException], ...] = tuple(
    cls for cls in (getattr(kerr, "NoBrokersAvailable", None),) if isinstance(cls, type)
)

_AUTH = (
    kerr.AuthorizationError,
    kerr.SaslAuthenticationFailedError,
    kerr.UnsupportedSaslMechanismError,
    kerr.IllegalSaslStateError,
)
_TOO_LARGE = (kerr.MessageSizeTooLargeError, kerr.RecordListTooLargeError)
_BAD_CONFIG = (kerr.KafkaConfigurationError, kerr.InvalidConfigurationError)


class WaitTimeout(PermanentError):
    """A sensor (``await_message``, ``wait_for_lag_below``) gave up after its timeout."""


def is_transient(exc: BaseException) -> bool:
    """Retriable kafka-python errors, missing brokers and dropped connections pass on retry."""
    if isinstance(exc, FlowportError):
        return exc.transient
    if isinstance(exc, _AUTH + _TOO_LARGE + _BAD_CONFIG):
        return False
    if isinstance(exc, kerr.UnknownTopicOrPartitionError):
        # retriable in kafka-python (metadata may lag a create), but with auto-create off a
        # topic that is not there stays not there: flowport checks existence explicitly.
        return False
    if isinstance(exc, kerr.KafkaError):
        return bool(getattr(exc, "retriable", False))
    return isinstance(exc, (*_NO_BROKERS, ConnectionError, TimeoutError))


def _cause(exc: BaseException) -> str:
    return redact(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)


def translate(exc: BaseException, target: str, brokers: str) -> FlowportError:
    """A flowport error naming ``target`` (a topic, group, ...), the brokers and the cause."""
    if isinstance(exc, FlowportError):
        return exc
    where = f"{SYSTEM} {target} at {brokers}"
    cause = _cause(exc)
    if isinstance(exc, kerr.UnknownTopicOrPartitionError):
        return NotFound(
            f"{where}: topic does not exist ({cause}); flowport never auto-creates topics, "
            f"create it first (create_topics)",
            system=SYSTEM,
            target=target,
        )
    if isinstance(exc, _AUTH):
        return AuthError(f"{where}: not authorized ({cause})", system=SYSTEM, target=target)
    if isinstance(exc, _TOO_LARGE):
        return InvalidInput(
            f"{where}: message too large ({cause}); raise max_request_size / the topic's "
            f"max.message.bytes or send smaller messages",
            system=SYSTEM,
            target=target,
        )
    if isinstance(exc, (*_BAD_CONFIG, ValueError, TypeError)):
        return ConfigError(f"{where}: invalid setting ({cause})", system=SYSTEM, target=target)
    if isinstance(
        exc,
        kerr.CommitFailedError
        | kerr.IllegalGenerationError
        | kerr.UnknownMemberIdError
        | kerr.RebalanceInProgressError,
    ):
        return Conflict(
            f"{where}: offset commit refused by the group coordinator ({cause}); the group "
            f"has other active members or this consumer was evicted; the messages will be "
            f"delivered again (at-least-once)",
            system=SYSTEM,
            target=target,
        )
    if is_transient(exc):
        return TransientError(f"{where}: {cause}", system=SYSTEM, target=target)
    return PermanentError(f"{where}: {cause}", system=SYSTEM, target=target)
