"""The default SQL retry policy keeps trying for about half a minute, as documented: long
enough to ride out a 15 s database restart, whatever the jitter draws."""

from __future__ import annotations

import random
import time

import pytest
from sqlalchemy import exc as sa_exc

from flowport_sql import fetch_one


class Clock:
    """A fake monotonic clock that tenacity's sleeps advance."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


@pytest.mark.parametrize("draw", [0.1, 0.25, 0.5, 0.75, 1.0])
def test_default_policy_keeps_trying_for_about_half_a_minute(
    monkeypatch: pytest.MonkeyPatch, draw: float
) -> None:
    """``draw`` is where full jitter lands in [0, ceiling]: 0.5 is the median. The old
    policy (8 attempts, up to 10 s waits) gave up after ~18 s at the median."""
    clock = Clock()
    monkeypatch.setattr(time, "monotonic", clock.monotonic)
    monkeypatch.setattr(time, "sleep", clock.sleep)
    monkeypatch.setattr(random, "uniform", lambda low, high: low + (high - low) * draw)
    started = clock.now
    last_attempt: list[float] = []

    def down() -> None:
        last_attempt.append(clock.now - started)
        raise sa_exc.OperationalError("SELECT 1", {}, ConnectionRefusedError("refused"))

    retrier = fetch_one.retry_policy.bind(fetch_one.is_transient, "fetch_one")
    with pytest.raises(sa_exc.OperationalError):
        retrier(down)
    assert 25.0 <= last_attempt[-1] <= 30.0, last_attempt
