"""Which S3 errors are transient, and clear messages for the permanent ones.

Transient (retried by flowport, one request or one part at a time): SlowDown, Throttling,
RequestLimitExceeded, 429, 500 / 502 / 503 / 504, RequestTimeout, dropped or refused
connections, read timeouts, and checksum mismatches (BadDigest, a response checksum that does
not match). Never retried: any other 4xx, notably 400, 403 and 404.
"""

from __future__ import annotations

import contextlib
from typing import Any

from botocore import exceptions as bce

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

SYSTEM = "S3"

#: Error codes that mean "try again later", whatever the HTTP status (RequestTimeout is a 400).
TRANSIENT_CODES = frozenset(
    {
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottled",
        "RequestLimitExceeded",
        "TooManyRequestsException",
        "RequestTimeout",
        "RequestTimeoutException",
        "InternalError",
        "ServiceUnavailable",
        "BadDigest",
        "XAmzContentSHA256Mismatch",
        "XAmzContentChecksumMismatch",
    }
)
TRANSIENT_STATUS = frozenset({429, 500, 502, 503, 504})
AUTH_CODES = frozenset(
    {
        "AccessDenied",
        "AllAccessDisabled",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "ExpiredToken",
        "InvalidToken",
        "TokenRefreshRequired",
        "AccountProblem",
    }
)
NOT_FOUND_CODES = frozenset({"NoSuchKey", "NoSuchBucket", "NoSuchUpload", "NotFound", "404"})
CONFLICT_CODES = frozenset({"PreconditionFailed", "ConditionalRequestConflict"})

#: botocore / urllib3 exceptions for a connection that failed or broke mid-request.
_TRANSIENT_TYPES: tuple[type[BaseException], ...] = (
    bce.ConnectionError,  # EndpointConnectionError, ConnectTimeoutError, ...
    bce.HTTPClientError,  # ConnectionClosedError, ReadTimeoutError, ResponseStreamingError
    bce.IncompleteReadError,
    bce.ChecksumError,
    bce.FlexibleChecksumError,
    ConnectionError,  # builtins: reset, refused, broken pipe
    TimeoutError,
)
with contextlib.suppress(ImportError):  # urllib3 is botocore's, but keep the import soft
    from urllib3 import exceptions as u3

    _TRANSIENT_TYPES = (*_TRANSIENT_TYPES, u3.ProtocolError, u3.ReadTimeoutError, u3.SSLError)


def error_code(exc: BaseException) -> tuple[str, int | None]:
    """(S3 error code, HTTP status) of a ClientError, ('', None) otherwise."""
    if isinstance(exc, bce.ClientError):
        err = exc.response.get("Error") or {}
        status = (exc.response.get("ResponseMetadata") or {}).get("HTTPStatusCode")
        return str(err.get("Code") or ""), int(status) if status is not None else None
    return "", None


def is_transient(exc: BaseException) -> bool:
    """The one predicate: throttling, 5xx, RequestTimeout, dropped connections, bad checksums."""
    if isinstance(exc, FlowportError):
        return exc.transient
    if isinstance(exc, bce.ClientError):
        code, status = error_code(exc)
        return code in TRANSIENT_CODES or status in TRANSIENT_STATUS
    return isinstance(exc, _TRANSIENT_TYPES)


def _retry_after(exc: BaseException) -> float | None:
    if not isinstance(exc, bce.ClientError):
        return None
    headers: dict[str, Any] = (exc.response.get("ResponseMetadata") or {}).get("HTTPHeaders") or {}
    value = headers.get("retry-after")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def translate(
    exc: BaseException, *, operation: str, target: str, endpoint: str | None = None
) -> FlowportError:
    """A flowport error naming S3, ``target`` (``s3://bucket/key``), the endpoint and the cause.

    Raise it ``from exc``. Transient causes become :class:`TransientError` (the retry loop tries
    the unit again); everything else a :class:`PermanentError` subclass that is never retried.
    """
    if isinstance(exc, FlowportError):
        return exc
    at = f" at {endpoint}" if endpoint else ""
    code, status = error_code(exc)
    if isinstance(exc, bce.ClientError):
        err = exc.response.get("Error") or {}
        detail = str(err.get("Message") or "")
        said = f"{operation} returned {status or '?'}"
        if code and code != str(status):
            said += f" {code}"
        cause = f"{said}: {detail}" if detail and detail != code else said
    else:
        cause = f"{operation} failed: {type(exc).__name__}: {exc}"
    cause = redact(cause)
    parts = target.split("/", 3)  # s3://bucket/key -> ['s3:', '', 'bucket', 'key']
    kind = "object" if len(parts) == 4 and parts[3] else "bucket"
    if is_transient(exc):
        return TransientError(
            f"{SYSTEM} {target}{at}: {cause}",
            system=SYSTEM,
            target=target,
            retry_after=_retry_after(exc),
        )
    if code == "NoSuchBucket":
        bucket = target.split("/")[2] if target.startswith("s3://") else target
        return NotFound(
            f"{SYSTEM} bucket '{bucket}' not found{at} ({cause})", system=SYSTEM, target=target
        )
    if code in NOT_FOUND_CODES or status == 404:
        return NotFound(
            f"{SYSTEM} {kind} {target} not found{at} ({cause})", system=SYSTEM, target=target
        )
    if code in AUTH_CODES or status in (401, 403):
        return AuthError(
            f"{SYSTEM} refused access to {target}{at}: check the credentials and their "
            f"permissions ({cause})",
            system=SYSTEM,
            target=target,
        )
    if isinstance(exc, bce.NoCredentialsError | bce.PartialCredentialsError):
        return AuthError(
            f"{SYSTEM}: no usable AWS credentials for {target} ({cause})",
            system=SYSTEM,
            target=target,
        )
    if code in CONFLICT_CODES or status == 412:
        return Conflict(
            f"{SYSTEM} {kind} {target}{at}: a precondition failed ({cause})",
            system=SYSTEM,
            target=target,
        )
    if isinstance(
        exc,
        bce.ParamValidationError
        | bce.NoRegionError
        | bce.ProfileNotFound
        | bce.MissingDependencyException,
    ):
        return ConfigError(f"{SYSTEM} {target}: {cause}", system=SYSTEM, target=target)
    if status is not None and 400 <= status < 500:
        return InvalidInput(f"{SYSTEM} {target}{at}: {cause}", system=SYSTEM, target=target)
    return PermanentError(f"{SYSTEM} {target}{at}: {cause}", system=SYSTEM, target=target)
