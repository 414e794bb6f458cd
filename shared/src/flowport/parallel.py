"""Bounded-memory parallel map shared by the connectors."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


def bounded_map(
    items: Iterable[T], fn: Callable[[T], R], concurrency: int, name: str = "flowport"
) -> list[R]:
    """``[fn(i) for i in items]`` on ``concurrency`` threads, pulling the next item only when a
    thread is free (so at most ``concurrency`` items are alive). The first failure stops new
    work, waits for what is in flight, and is raised."""
    if concurrency <= 1:
        return [fn(item) for item in items]
    slots = threading.Semaphore(concurrency)
    failed = threading.Event()
    futures: list[Future[R]] = []

    def release(fut: Future[R]) -> None:
        if fut.exception() is not None:
            failed.set()
        slots.release()

    with ThreadPoolExecutor(concurrency, thread_name_prefix=name) as pool:
        iterator = iter(items)
        while True:
            slots.acquire()
            if failed.is_set():
                slots.release()
                break
            try:
                item = next(iterator)
            except StopIteration:
                slots.release()
                break
            except BaseException:
                failed.set()
                raise  # the pool's exit still waits for the parts in flight
            fut = pool.submit(fn, item)
            del item  # the pool holds it only while it runs: memory stays bounded
            fut.add_done_callback(release)
            futures.append(fut)
    for fut in futures:  # raise the first failure, in submission order
        exc = fut.exception()
        if exc is not None:
            raise exc
    return [fut.result() for fut in futures]


__all__ = ["bounded_map"]
