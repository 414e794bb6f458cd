"""Bounded-memory parallelism shared by the connectors: a parallel map, and read-ahead of a
stream on a thread of its own."""

from __future__ import annotations

import contextvars
import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

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


_END = object()


def prefetch(items: Iterable[T], depth: int = 2, name: str = "flowport-prefetch") -> Iterator[T]:
    """``items``, produced on a thread of their own up to ``depth`` ahead of the consumer, so
    a source's reads overlap a sink's writes (both release the GIL in their C code). The
    producer's failure is raised here; a consumer that stops early stops the producer, which
    closes ``items`` on its own thread (a database cursor, a consumer) before this returns."""
    slots: queue.Queue[tuple[bool, Any]] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def offer(entry: tuple[bool, Any]) -> bool:
        while not stop.is_set():
            try:
                slots.put(entry, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        iterator = iter(items)
        try:
            for item in iterator:
                if not offer((True, item)):
                    return
            offer((True, _END))
        except BaseException as exc:  # handed to the consumer, raised there
            offer((False, exc))
        finally:
            close = getattr(iterator, "close", None)
            if close is not None:
                close()

    context = contextvars.copy_context()  # Prefect's run context: logs and progress
    thread = threading.Thread(target=context.run, args=(produce,), name=name, daemon=True)
    thread.start()
    try:
        while True:
            ok, item = slots.get()
            if not ok:
                raise item
            if item is _END:
                return
            yield item
            del item
    finally:
        stop.set()
        thread.join()


__all__ = ["bounded_map", "prefetch"]
