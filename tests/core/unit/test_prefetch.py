"""flowport.parallel.prefetch: read-ahead on a thread of its own, bounded, failures and early
stops handled."""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Iterator

import pytest

from flowport.parallel import prefetch

WHO: contextvars.ContextVar[str] = contextvars.ContextVar("who", default="nobody")


def test_items_arrive_in_order_produced_on_another_thread_with_the_context() -> None:
    threads: set[str] = set()
    seen: list[str] = []

    def produce() -> Iterator[int]:
        for i in range(100):
            threads.add(threading.current_thread().name)
            seen.append(WHO.get())
            yield i

    WHO.set("the flow run")
    assert list(prefetch(produce(), name="reader")) == list(range(100))
    assert threads == {"reader"}
    assert set(seen) == {"the flow run"}


def test_the_producer_runs_at_most_depth_ahead() -> None:
    produced: list[int] = []
    gaps: list[int] = []

    def produce() -> Iterator[int]:
        for i in range(50):
            produced.append(i)
            yield i

    for consumed, _ in enumerate(prefetch(produce(), depth=3), start=1):
        threading.Event().wait(0.002)  # let the producer run ahead as far as it may
        gaps.append(len(produced) - consumed)
    # Queued items (3) plus the one the producer holds while it waits for a slot.
    assert max(gaps) <= 4
    assert max(gaps) >= 2  # it did read ahead


def test_a_producer_failure_is_raised_after_the_items_before_it() -> None:
    def produce() -> Iterator[int]:
        yield 1
        yield 2
        raise ValueError("corrupt part 3")

    got: list[int] = []
    with pytest.raises(ValueError, match="corrupt part 3"):
        for item in prefetch(produce()):
            got.append(item)
    assert got == [1, 2]


def test_stopping_early_closes_the_source_on_its_thread_and_ends_it() -> None:
    closed_on: list[str] = []
    done = threading.Event()

    def produce() -> Iterator[int]:
        try:
            yield from range(10_000)
        finally:
            closed_on.append(threading.current_thread().name)
            done.set()

    stream = prefetch(produce(), name="source")
    assert next(stream) == 0
    stream.close()
    assert done.is_set()  # close() waited for the producer to finish
    assert closed_on == ["source"]
    assert not any(t.name == "source" for t in threading.enumerate())


def test_a_consumer_failure_stops_the_producer() -> None:
    stopped = threading.Event()

    def produce() -> Iterator[int]:
        try:
            i = 0
            while True:
                yield i
                i += 1
        finally:
            stopped.set()

    with pytest.raises(RuntimeError, match="sink broke"):
        for item in prefetch(produce()):
            if item == 5:
                raise RuntimeError("sink broke")
    assert stopped.is_set()
