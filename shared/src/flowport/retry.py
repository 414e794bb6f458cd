"""The one retry loop: tenacity with exponential backoff, full jitter, a cap and a deadline.

A :class:`RetryPolicy` says how often and how long; :meth:`RetryPolicy.bind` pairs it with a
connector's ``is_transient`` predicate into a :class:`Retrier` that runs one idempotent unit
(one part, one request, one transaction). Only transient errors are retried; a server's
Retry-After hint is honoured; every retry is logged and reaches the plugin hooks.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import tenacity
from pydantic import BaseModel, ConfigDict, Field

from flowport.errors import FlowportError, causes
from flowport.progress import run_logger
from flowport.secrets import redact

T = TypeVar("T")


class RetryPolicy(BaseModel):
    """How flowport retries one idempotent unit. Immutable; ``replace(...)`` derives a variant."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    attempts: int = Field(default=5, ge=1, description="Tries in all, the first one included.")
    initial_delay: float = Field(
        default=0.2, ge=0, description="Backoff ceiling after the first failure (s)."
    )
    max_delay: float = Field(default=20.0, ge=0, description="Cap on any single wait (s).")
    multiplier: float = Field(
        default=2.0, ge=1, description="Growth of the backoff ceiling per attempt."
    )
    deadline: float | None = Field(
        default=300.0,
        gt=0,
        description="No new attempt starts after this many seconds (None: no limit).",
    )
    jitter: bool = Field(default=True, description="Full jitter: wait uniformly in [0, ceiling].")

    def replace(self, **changes: Any) -> RetryPolicy:
        """A copy with ``changes`` applied and validated."""
        return RetryPolicy.model_validate({**self.model_dump(), **changes})

    def delay(self, attempt: int, exc: BaseException | None = None) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        ceiling = min(self.max_delay, self.initial_delay * self.multiplier ** (attempt - 1))
        wait = random.uniform(0, ceiling) if self.jitter else ceiling
        hint = retry_after(exc) if exc is not None else None
        return max(wait, hint) if hint is not None else wait

    def bind(
        self, is_transient: Callable[[BaseException], bool], name: str = "operation"
    ) -> Retrier:
        """A retrier that applies this policy to errors ``is_transient`` accepts."""
        return Retrier(self, is_transient, name)


NO_RETRY = RetryPolicy(attempts=1)


def retry_after(exc: BaseException) -> float | None:
    """The Retry-After hint (seconds) carried by ``exc`` or an exception it was raised from."""
    for seen in causes(exc):
        hint = getattr(seen, "retry_after", None)
        if isinstance(hint, int | float) and hint >= 0:
            return float(hint)
    return None


class Retrier:
    """Runs a callable under a policy, retrying only what the predicate calls transient."""

    __slots__ = ("is_transient", "name", "policy")

    def __init__(
        self, policy: RetryPolicy, is_transient: Callable[[BaseException], bool], name: str
    ):
        self.policy = policy
        self.is_transient = is_transient
        self.name = name

    def should_retry(self, exc: BaseException) -> bool:
        """Flowport errors decide for themselves; anything else asks the connector's predicate."""
        if not isinstance(exc, Exception):
            return False
        if isinstance(exc, FlowportError):
            return exc.transient
        return self.is_transient(exc)

    def _kwargs(self) -> dict[str, Any]:
        policy = self.policy
        stop: tenacity.stop.stop_base = tenacity.stop_after_attempt(policy.attempts)
        if policy.deadline is not None:
            stop = stop | tenacity.stop_before_delay(policy.deadline)
        return {
            "stop": stop,
            "wait": self._wait,
            "retry": tenacity.retry_if_exception(self.should_retry),
            "before_sleep": self._before_sleep,
            "reraise": True,
        }

    def _wait(self, state: tenacity.RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        return self.policy.delay(state.attempt_number, exc)

    def _before_sleep(self, state: tenacity.RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        assert exc is not None  # tenacity only sleeps after a failure
        delay = state.upcoming_sleep
        run_logger("flowport.retry").warning(
            "%s: attempt %d/%d failed with %s: %s; retrying in %.2fs",
            self.name,
            state.attempt_number,
            self.policy.attempts,
            type(exc).__name__,
            redact(str(exc)),
            delay,
        )
        from flowport.plugins import hook

        hook().flowport_task_retried(
            name=self.name,
            attempt=state.attempt_number,
            attempts=self.policy.attempts,
            delay=delay,
            exception=exc,
        )

    def _gave_up(self, exc: Exception, stats: dict[str, Any]) -> None:
        """Say so when the attempts or the deadline ran out, not when a permanent error ended it."""
        if not self.should_retry(exc):
            return
        attempts = stats.get("attempt_number", self.policy.attempts)
        seconds = stats.get("delay_since_first_attempt", 0.0)
        note = f"{self.name}: gave up after {attempts} attempts in {seconds:.1f} s"
        run_logger("flowport.retry").error(
            "%s; last error %s: %s", note, type(exc).__name__, redact(str(exc))
        )
        if hasattr(exc, "add_note"):  # Python 3.11+: the traceback says it too
            exc.add_note(note)

    def __call__(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """Call ``fn(*args, **kwargs)``, retrying transient failures under the policy."""
        # Fast path: a first attempt that succeeds never builds tenacity's machinery.
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            if self.policy.attempts == 1 or not self.should_retry(exc):
                raise
            first = exc
        retrying = tenacity.Retrying(**self._kwargs())
        try:
            result: T = retrying(_Replay(first, fn), *args, **kwargs)
        except Exception as exc:
            self._gave_up(exc, retrying.statistics)
            raise
        return result

    async def acall(self, fn: Callable[..., Awaitable[T]], /, *args: Any, **kwargs: Any) -> T:
        """Await ``fn(*args, **kwargs)``, retrying transient failures under the policy."""
        try:
            return await fn(*args, **kwargs)
        except Exception as exc:
            if self.policy.attempts == 1 or not self.should_retry(exc):
                raise
            first = exc
        retrying = tenacity.AsyncRetrying(**self._kwargs())
        try:
            result: T = await retrying(_AsyncReplay(first, fn), *args, **kwargs)
        except Exception as exc:
            self._gave_up(exc, retrying.statistics)
            raise
        return result


class _Replay:
    """Hands tenacity the first attempt's failure as its attempt 1, then calls ``fn``."""

    def __init__(self, first: BaseException, fn: Callable[..., Any]):
        self.first: BaseException | None = first
        self.fn = fn

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.first is not None:
            first, self.first = self.first, None
            raise first
        return self.fn(*args, **kwargs)


class _AsyncReplay(_Replay):
    async def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.first is not None:
            first, self.first = self.first, None
            raise first
        return await self.fn(*args, **kwargs)
