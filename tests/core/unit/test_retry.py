"""RetryPolicy and Retrier: what is retried, how long, and what is logged."""

from __future__ import annotations

import logging
import pickle
import time

import pytest
from pydantic import SecretStr, ValidationError

from flowport.errors import AuthError, NotFound, TransientError
from flowport.retry import RetryPolicy
from flowport.secrets import reveal

FAST = RetryPolicy(attempts=4, initial_delay=0.0, max_delay=0.0, deadline=None)


class Flaky:
    """Fails with ``errors`` in order, then returns ``value``."""

    def __init__(self, *errors: BaseException, value: str = "ok"):
        self.errors = list(errors)
        self.calls = 0
        self.value = value

    def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return self.value


def transient_oserror(exc: BaseException) -> bool:
    return isinstance(exc, ConnectionError)


def test_transient_errors_are_retried_until_success() -> None:
    fn = Flaky(ConnectionResetError("reset"), ConnectionError("refused"))
    assert FAST.bind(transient_oserror)(fn) == "ok"
    assert fn.calls == 3


def test_permanent_error_raised_after_one_attempt() -> None:
    fn = Flaky(NotFound("bucket 'x' not found"))
    with pytest.raises(NotFound):
        FAST.bind(lambda e: True)(fn)  # even a predicate that says yes cannot retry it
    assert fn.calls == 1


def test_unclassified_error_not_retried_when_predicate_says_no() -> None:
    fn = Flaky(ValueError("bad"))
    with pytest.raises(ValueError):
        FAST.bind(transient_oserror)(fn)
    assert fn.calls == 1


def test_attempts_exhausted_reraises_last_error() -> None:
    fn = Flaky(*[ConnectionError(f"e{i}") for i in range(10)])
    with pytest.raises(ConnectionError, match="e3"):
        FAST.bind(transient_oserror)(fn)
    assert fn.calls == 4


def test_transient_flowport_error_retried_without_predicate() -> None:
    fn = Flaky(TransientError("throttled"))
    assert FAST.bind(lambda e: False)(fn) == "ok"
    assert fn.calls == 2


def test_deadline_stops_new_attempts() -> None:
    policy = RetryPolicy(attempts=100, initial_delay=0.2, max_delay=0.2, jitter=False, deadline=0.5)
    fn = Flaky(*[ConnectionError("down")] * 100)
    with pytest.raises(ConnectionError):
        policy.bind(transient_oserror)(fn)
    # No attempt starts after the deadline: 0.2 s waits fit 0.5 s at most twice.
    assert fn.calls == 3


def test_retry_after_is_honoured(monkeypatch: pytest.MonkeyPatch) -> None:
    sleeps: list[float] = []
    monkeypatch.setattr(time, "sleep", sleeps.append)  # tenacity sleeps through time.sleep
    policy = RetryPolicy(
        attempts=3, initial_delay=0.01, max_delay=0.01, jitter=False, deadline=None
    )
    fn = Flaky(TransientError("slow down", retry_after=7.5))
    assert policy.bind(lambda e: False)(fn) == "ok"
    assert sleeps == [7.5]


def test_retry_after_found_on_chained_cause() -> None:
    policy = RetryPolicy(jitter=False, initial_delay=1, max_delay=1)
    cause = TransientError("429", retry_after=3.0)
    try:
        try:
            raise cause
        except TransientError as inner:
            raise RuntimeError("wrapped") from inner
    except RuntimeError as outer:
        assert policy.delay(1, outer) == 3.0


def test_full_jitter_bounded_by_exponential_ceiling_and_cap() -> None:
    policy = RetryPolicy(initial_delay=1.0, multiplier=2.0, max_delay=5.0)
    for attempt, ceiling in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 5.0), (9, 5.0)]:
        delays = [policy.delay(attempt) for _ in range(200)]
        assert all(0 <= d <= ceiling for d in delays)
        assert max(delays) > ceiling / 2  # spread over the range, not pinned to 0


def test_each_retry_logged_without_secrets(caplog: pytest.LogCaptureFixture) -> None:
    password = reveal(SecretStr("hunter2-very-secret"))
    fn = Flaky(
        ConnectionError(f"could not connect to postgresql://app:{password}@db:5432/x"),
        ConnectionError("token=abc123def failed"),
    )
    with caplog.at_level(logging.WARNING, logger="flowport.retry"):
        FAST.bind(transient_oserror, name="load_rows")(fn)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2
    assert "load_rows: attempt 1/4 failed with ConnectionError" in lines[0]
    assert "retrying in" in lines[0]
    assert "attempt 2/4" in lines[1]
    text = "\n".join(lines)
    assert "hunter2-very-secret" not in text
    assert "abc123def" not in text


def test_policy_is_immutable_validated_and_serialisable() -> None:
    policy = RetryPolicy(attempts=3)
    with pytest.raises(ValidationError):
        policy.attempts = 9  # type: ignore[misc]
    with pytest.raises(ValidationError):
        RetryPolicy(attempts=0)
    assert policy.replace(max_delay=1.0).max_delay == 1.0
    assert policy.attempts == 3
    assert RetryPolicy.model_validate_json(policy.model_dump_json()) == policy
    assert pickle.loads(pickle.dumps(policy)) == policy


@pytest.mark.anyio
async def test_async_retrier() -> None:
    calls = 0

    async def flaky() -> int:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise ConnectionError("again")
        return calls

    assert await FAST.bind(transient_oserror).acall(flaky) == 3


def test_auth_error_is_never_retried() -> None:
    fn = Flaky(AuthError("S3: SignatureDoesNotMatch for bucket 'b'"))
    with pytest.raises(AuthError):
        FAST.bind(lambda e: True)(fn)
    assert fn.calls == 1
