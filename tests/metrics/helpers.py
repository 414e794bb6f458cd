"""Sample tasks and a scraper shared by the metrics tests."""

from __future__ import annotations

import urllib.request
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor

from prometheus_client.parser import text_string_to_metric_families

from flowport import InvalidInput, RetryPolicy, TransientError
from flowport.progress import Progress
from flowport.task import RetryingTask

FAST = RetryPolicy(attempts=5, initial_delay=0, max_delay=0)


class LoadRows(RetryingTask):
    """Moves ``batches`` of rows; the first ``flaky`` attempts of each batch fail transiently,
    and ``fail_after`` batches in, the load fails permanently."""

    retry_policy = FAST

    def run(self, batches: list[int], flaky: int = 0, fail_after: int | None = None) -> int:
        failures = {"left": flaky}

        def batch(n: int) -> int:
            if failures["left"]:
                failures["left"] -= 1
                raise TransientError("connection reset", system="demo", target="rows")
            return n

        with Progress("load rows", total=None, unit="rows") as progress:
            for i, n in enumerate(batches):
                if fail_after is not None and i == fail_after:
                    raise InvalidInput("bad row", system="demo", target="rows")
                progress.advance(self.retrying(batch, n))
        return sum(batches)

    def is_transient(self, exc: BaseException) -> bool:
        return False


class UploadParts(RetryingTask):
    """Moves ``parts`` byte counts from worker threads, like a multipart upload, each part
    failing transiently once (retries in threads without the task's context)."""

    retry_policy = FAST

    def run(self, parts: list[int], flaky: bool = False) -> int:
        retrier = self.retrier
        seen: set[int] = set()

        def part(i: int) -> int:
            if flaky and i not in seen:
                seen.add(i)
                raise TransientError("slow down", system="demo", target=f"part {i}")
            return parts[i]

        with (
            Progress("upload parts", total=sum(parts)) as progress,
            ThreadPoolExecutor(4) as pool,
        ):
            for size in pool.map(lambda i: retrier(part, i), range(len(parts))):
                progress.advance(size)
        return sum(parts)

    def is_transient(self, exc: BaseException) -> bool:
        return False


load_rows = LoadRows()
upload_parts = UploadParts()


def scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=30) as response:
        return str(response.read().decode())


def sample(text: str, name: str, **labels: str) -> float:
    """The value of sample ``name`` with ``labels`` in exposition ``text`` (0 if absent)."""
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return float(s.value)
    return 0.0


def samples(
    text: str, names: Iterable[str]
) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    wanted = set(names)
    return {
        (s.name, tuple(sorted(s.labels.items()))): float(s.value)
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name in wanted
    }
