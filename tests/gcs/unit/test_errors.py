"""The transient / permanent split and the messages users read."""

from __future__ import annotations

from typing import Any

import pytest
import requests
import urllib3
from google.api_core import exceptions

from flowport.errors import (
    AuthError,
    Conflict,
    InvalidInput,
    NotFound,
    PermanentError,
    TransientError,
)
from flowport_gcs import errors

gexc: Any = exceptions  # untyped module


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
def test_transient_statuses(status: int) -> None:
    exc = gexc.from_http_status(status, "boom")
    assert errors.is_transient(exc)
    assert isinstance(errors.translate(exc, "upload", "gs://b/k"), TransientError)


@pytest.mark.parametrize(
    ("status", "kind"),
    [(400, InvalidInput), (401, AuthError), (403, AuthError), (404, NotFound), (412, Conflict)],
)
def test_permanent_statuses(status: int, kind: type[PermanentError]) -> None:
    exc = gexc.from_http_status(status, "boom")
    assert not errors.is_transient(exc)
    err = errors.translate(exc, "upload", "gs://b/k", "http://127.0.0.1:4443")
    assert isinstance(err, kind)
    assert "gs://b/k" in str(err) and "127.0.0.1:4443" in str(err)
    assert f"HTTP {status}" in str(err)


@pytest.mark.parametrize(
    "exc",
    [
        ConnectionResetError("reset"),
        TimeoutError("slow"),
        requests.exceptions.ConnectionError("refused"),
        requests.exceptions.ReadTimeout("read"),
        requests.exceptions.ChunkedEncodingError("cut"),
        urllib3.exceptions.ProtocolError("Connection broken"),
    ],
)
def test_network_errors_are_transient(exc: BaseException) -> None:
    assert errors.is_transient(exc)


def test_wrapped_network_error_is_transient() -> None:
    try:
        try:
            raise ConnectionResetError("peer")
        except ConnectionResetError as inner:
            raise RuntimeError("wrapped") from inner
    except RuntimeError as outer:
        assert errors.is_transient(outer)


def test_value_error_is_permanent() -> None:
    assert not errors.is_transient(ValueError("bad"))


def test_retry_after_is_carried() -> None:
    response = requests.Response()
    response.status_code = 429
    response.headers["Retry-After"] = "7"
    exc = requests.exceptions.HTTPError("slow down", response=response)
    err = errors.translate(exc, "upload", "gs://b/k")
    assert isinstance(err, TransientError) and err.retry_after == 7.0
