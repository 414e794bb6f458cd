"""Which S3 failures are retried, and what the permanent ones say."""

from __future__ import annotations

import pytest
from botocore import exceptions as bce

from flowport.errors import AuthError, Conflict, InvalidInput, NotFound, TransientError
from flowport_s3 import errors
from tests.s3.unit.fakes import client_error

TARGET = "s3://raw-events/2026/a.json"


@pytest.mark.parametrize(
    ("code", "status"),
    [
        ("SlowDown", 503),
        ("Throttling", 400),
        ("RequestLimitExceeded", 400),
        ("ServiceUnavailable", 503),
        ("InternalError", 500),
        ("BadGateway", 502),
        ("GatewayTimeout", 504),
        ("RequestTimeout", 400),
        ("BadDigest", 400),
        ("TooManyRequests", 429),
    ],
)
def test_transient_codes(code: str, status: int) -> None:
    exc = client_error(code, status)
    assert errors.is_transient(exc)
    assert isinstance(errors.translate(exc, operation="PutObject", target=TARGET), TransientError)


@pytest.mark.parametrize(
    ("code", "status", "kind"),
    [
        ("InvalidArgument", 400, InvalidInput),
        ("AccessDenied", 403, AuthError),
        ("SignatureDoesNotMatch", 403, AuthError),
        ("403", 403, AuthError),
        ("NoSuchKey", 404, NotFound),
        ("404", 404, NotFound),
        ("NoSuchBucket", 404, NotFound),
        ("PreconditionFailed", 412, Conflict),
    ],
)
def test_permanent_codes(code: str, status: int, kind: type) -> None:
    exc = client_error(code, status)
    assert not errors.is_transient(exc)
    err = errors.translate(
        exc, operation="GetObject", target=TARGET, endpoint="http://127.0.0.1:7070"
    )
    assert type(err) is kind
    assert not err.transient
    assert "http://127.0.0.1:7070" in err.message
    assert "GetObject returned" in err.message


@pytest.mark.parametrize(
    "exc",
    [
        bce.EndpointConnectionError(endpoint_url="http://x"),
        bce.ConnectionClosedError(endpoint_url="http://x"),
        bce.ReadTimeoutError(endpoint_url="http://x"),
        bce.ConnectTimeoutError(endpoint_url="http://x"),
        bce.ResponseStreamingError(error="reset"),
        bce.IncompleteReadError(actual_bytes=1, expected_bytes=2),
        bce.FlexibleChecksumError(error_msg="crc32 mismatch"),
        ConnectionResetError("reset"),
        TimeoutError("slow"),
    ],
)
def test_connection_and_checksum_errors_are_transient(exc: BaseException) -> None:
    assert errors.is_transient(exc)


def test_programming_errors_are_not_transient() -> None:
    assert not errors.is_transient(ValueError("bad"))
    assert not errors.is_transient(bce.ParamValidationError(report="Bucket missing"))


def test_not_found_names_bucket_or_object() -> None:
    err = errors.translate(
        client_error("NoSuchBucket", 404),
        operation="HeadBucket",
        target="s3://raw-events",
        endpoint="http://h:1",
    )
    assert err.message.startswith("S3 bucket 'raw-events' not found at http://h:1")
    err = errors.translate(client_error("NoSuchKey", 404), operation="GetObject", target=TARGET)
    assert err.message.startswith(f"S3 object {TARGET} not found")


def test_retry_after_is_carried() -> None:
    exc = bce.ClientError(
        {
            "Error": {"Code": "SlowDown"},
            "ResponseMetadata": {"HTTPStatusCode": 503, "HTTPHeaders": {"retry-after": "3"}},
        },
        "PutObject",
    )
    err = errors.translate(exc, operation="PutObject", target=TARGET)
    assert isinstance(err, TransientError)
    assert err.retry_after == 3.0


def test_revealed_secrets_are_redacted_from_messages() -> None:
    from flowport.secrets import reveal

    reveal("sUpErSeCrEt-value-123")
    exc = client_error("InvalidArgument", 400, message="bad header sUpErSeCrEt-value-123")
    err = errors.translate(exc, operation="PutObject", target=TARGET)
    assert "sUpErSeCrEt-value-123" not in err.message


def test_missing_crc_dependency_is_a_config_error() -> None:
    from flowport.errors import ConfigError

    exc = bce.MissingDependencyException(msg="Using CRC32C requires botocore[crt]")
    err = errors.translate(exc, operation="UploadPart", target=TARGET)
    assert isinstance(err, ConfigError)
    assert "botocore[crt]" in err.message
