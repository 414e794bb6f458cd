"""The error hierarchy and secret redaction."""

from __future__ import annotations

import pickle

import cloudpickle
import pytest
from pydantic import SecretStr

from flowport import errors
from flowport.secrets import MASK, redact, reveal


def test_hierarchy() -> None:
    for cls in (
        errors.NotFound,
        errors.AuthError,
        errors.ConfigError,
        errors.InvalidInput,
        errors.Conflict,
        errors.DeliveryError,
    ):
        assert issubclass(cls, errors.PermanentError)
        assert not cls.transient
    assert errors.TransientError.transient
    assert issubclass(errors.TransientError, errors.FlowportError)


def test_message_names_system_and_target_and_chains_cause() -> None:
    cause = KeyError("NoSuchBucket")
    with pytest.raises(errors.NotFound) as info:
        try:
            raise cause
        except KeyError as exc:
            raise errors.NotFound(
                "S3 bucket 'raw' not found at http://127.0.0.1:7070 (HeadBucket returned 404)",
                system="S3",
                target="raw",
            ) from exc
    err = info.value
    assert "bucket 'raw'" in str(err) and "404" in str(err)
    assert (err.system, err.target) == ("S3", "raw")
    assert err.__cause__ is cause


@pytest.mark.parametrize(
    "dumps,loads", [(pickle.dumps, pickle.loads), (cloudpickle.dumps, pickle.loads)]
)
def test_errors_pickle(dumps, loads) -> None:  # type: ignore[no-untyped-def]
    err = errors.TransientError("throttled", system="S3", target="b", retry_after=2.0)
    back = loads(dumps(err))
    assert type(back) is errors.TransientError
    assert (str(back), back.system, back.target, back.retry_after) == ("throttled", "S3", "b", 2.0)


def test_is_permanent_follows_cause_chain() -> None:
    try:
        try:
            raise errors.AuthError("denied")
        except errors.AuthError as inner:
            raise RuntimeError("wrapper") from inner
    except RuntimeError as outer:
        assert errors.is_permanent(outer)
    assert not errors.is_permanent(errors.TransientError("x"))


def test_redact_masks_revealed_values_urls_and_pairs() -> None:
    value = reveal(SecretStr("s3cr3t-value-42"))
    assert value == "s3cr3t-value-42"
    text = redact(
        "failed for s3cr3t-value-42 at mysql://root:pw123@host/db with password=xyz "
        "and aws_secret_access_key: 'AKIA/xx' token=tok"
    )
    for leaked in ("s3cr3t-value-42", "pw123", "xyz", "AKIA/xx", "tok "):
        assert leaked not in text
    assert MASK in text
    assert "mysql://root:" in text  # the user name stays: it helps debugging


def test_reveal_none() -> None:
    assert reveal(None) is None


def test_cause_cycles_end_the_walk() -> None:
    a, b = RuntimeError("a"), RuntimeError("b")
    a.__cause__, b.__cause__ = b, a
    assert not errors.is_permanent(a)
    assert [str(e) for e in errors.causes(a)] == ["a", "b"]
