"""Which GCS errors are transient, and clear messages for the permanent ones.

Transient: HTTP 408, 429, 500, 502, 503, 504, dropped or reset connections and timeouts.
Permanent: 400, 401 (after the one credential refresh the store attempts), 403, 404, 409, 412
and anything else. The google client's own retry is switched off everywhere (``retry=None``),
so flowport's retrier is the only loop.
"""

from __future__ import annotations

import http.client
import socket

from flowport.errors import (
    AuthError,
    Conflict,
    FlowportError,
    InvalidInput,
    NotFound,
    PermanentError,
    TransientError,
)
from flowport.secrets import redact

SYSTEM = "GCS"

TRANSIENT_STATUS = frozenset({408, 429, 500, 502, 503, 504})


def status_of(exc: BaseException) -> int | None:
    """The HTTP status an exception carries (google.api_core or a requests response)."""
    code = getattr(exc, "code", None)
    if isinstance(code, int) and 100 <= code < 600:
        return code
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None)
    return status if isinstance(status, int) else None


def _network_error(exc: BaseException) -> bool:
    import requests
    import urllib3.exceptions

    kinds: tuple[type[BaseException], ...] = (
        ConnectionError,  # builtin: ConnectionResetError, BrokenPipeError, ...
        TimeoutError,
        socket.timeout,
        http.client.HTTPException,  # IncompleteRead, RemoteDisconnected
        requests.exceptions.ConnectionError,
        requests.exceptions.Timeout,
        requests.exceptions.ChunkedEncodingError,
        urllib3.exceptions.ProtocolError,
        urllib3.exceptions.TimeoutError,
        urllib3.exceptions.DecodeError,
    )
    if isinstance(exc, kinds):
        return True
    try:
        import google.auth.exceptions

        if isinstance(exc, google.auth.exceptions.TransportError):
            return True
    except ImportError:  # pragma: no cover - google-auth is a dependency
        pass
    return False


def is_transient(exc: BaseException) -> bool:
    """408/429/5xx answers, connection resets and timeouts pass on retry; the rest is permanent."""
    if isinstance(exc, FlowportError):
        return exc.transient
    status = status_of(exc)
    if status is not None:
        return status in TRANSIENT_STATUS
    seen: BaseException | None = exc
    while seen is not None:  # requests wraps urllib3 wraps socket errors
        if _network_error(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _retry_after(exc: BaseException) -> float | None:
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None) or {}
    value = headers.get("Retry-After") if hasattr(headers, "get") else None
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _cause(exc: BaseException) -> str:
    status = status_of(exc)
    message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    text = f"HTTP {status}: {message}" if status else f"{type(exc).__name__}: {message}"
    text = " ".join(text.split())
    return redact(text[:500])


def translate(exc: BaseException, action: str, target: str, where: str = "") -> FlowportError:
    """A flowport error naming GCS, the ``action`` on ``target`` and the cause; raise ``from exc``.

    ``target`` is ``gs://bucket/key``; ``where`` the endpoint when it is not Google's.
    """
    if isinstance(exc, FlowportError):
        return exc
    at = f" at {where}" if where else ""
    cause = _cause(exc)
    kw = {"system": SYSTEM, "target": target}
    if is_transient(exc):
        return TransientError(
            f"GCS {action} of {target}{at} failed transiently ({cause})",
            retry_after=_retry_after(exc),
            **kw,
        )
    status = status_of(exc)
    if status == 404:
        return NotFound(f"GCS object or bucket {target} not found{at} ({cause})", **kw)
    if status in (401, 403):
        return AuthError(
            f"GCS {action} of {target}{at} was refused: the credentials are missing, expired "
            f"or lack a permission ({cause})",
            **kw,
        )
    if status == 412:
        return Conflict(
            f"GCS {action} of {target}{at}: a generation / metageneration precondition "
            f"did not hold ({cause})",
            **kw,
        )
    if status == 409:
        return Conflict(f"GCS {action} of {target}{at} conflicts ({cause})", **kw)
    if status == 400:
        return InvalidInput(f"GCS {action} of {target}{at} was rejected as invalid ({cause})", **kw)
    return PermanentError(f"GCS {action} of {target}{at} failed ({cause})", **kw)
