"""Small RetryingTask subclasses used by the core tests (importable by Dask workers)."""

from __future__ import annotations

import asyncio
from typing import Any

from flowport import NotFound, RetryingTask


class Flaky:
    """Fails transiently ``failures`` times per key, then succeeds. Module-level state is
    fine here: each test uses fresh keys."""

    counts: dict[str, int] = {}

    @classmethod
    def hit(cls, key: str, failures: int) -> int:
        cls.counts[key] = cls.counts.get(key, 0) + 1
        if cls.counts[key] <= failures:
            raise ConnectionResetError(f"reset on attempt {cls.counts[key]}")
        return cls.counts[key]


class Add(RetryingTask):
    """Adds ``step`` to ``x``; used for parameters, map and pickling."""

    tags = ("flowport-test",)

    def run(self, x: int, step: int = 1) -> int:
        return self.retrying(lambda: x + step)

    def is_transient(self, exc: BaseException) -> bool:
        return isinstance(exc, ConnectionError)


class FlakyFetch(RetryingTask):
    """Retries a flaky unit; ``failures`` transient errors before success."""

    def run(self, key: str, failures: int = 2) -> int:
        return self.retrying(Flaky.hit, key, failures)

    def is_transient(self, exc: BaseException) -> bool:
        return isinstance(exc, ConnectionError)


class Missing(RetryingTask):
    """Always raises a permanent error, counting its calls."""

    calls = 0

    def run(self, what: str) -> None:
        type(self).calls += 1
        raise NotFound(f"test object '{what}' not found", system="test", target=what)

    def is_transient(self, exc: BaseException) -> bool:
        return True


class AsyncDouble(RetryingTask):
    """An async task with an async retried unit."""

    async def run(self, x: int, key: str = "", failures: int = 0) -> int:
        async def unit() -> int:
            await asyncio.sleep(0)
            if key:
                Flaky.hit(key, failures)
            return 2 * x

        return await self.aretrying(unit)

    def is_transient(self, exc: BaseException) -> bool:
        return isinstance(exc, ConnectionError)


def noop_task_result(x: Any) -> Any:
    return x


class CountingList(list):  # type: ignore[type-arg]
    """A list that counts how often anything iterates it (Prefect walking inputs would)."""

    iterations = 0

    def __iter__(self):  # type: ignore[no-untyped-def]
        type(self).iterations += 1
        return super().__iter__()


class SumRows(RetryingTask):
    """Takes a payload parameter, as bulk inserts do."""

    payload_params = ("rows",)

    def run(self, label: str, rows: list[int]) -> tuple[str, int]:
        return label, sum(rows)

    def is_transient(self, exc: BaseException) -> bool:
        return False
