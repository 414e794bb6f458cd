"""RetryingTask inside real Prefect flows: a real task run with flowport's retries."""

from __future__ import annotations

import asyncio
import inspect
import pickle
import uuid

import cloudpickle
import pytest
from prefect import flow
from prefect.context import TaskRunContext

from flowport import NotFound, RetryPolicy
from flowport.hookspecs import hookimpl
from flowport.plugins import register, unregister
from flowport.task import _Payload
from tests.core.sample_tasks import Add, AsyncDouble, Flaky, FlakyFetch, Missing, SumRows

pytestmark = pytest.mark.usefixtures("prefect_server")

FAST = RetryPolicy(attempts=5, initial_delay=0, max_delay=0)


def key() -> str:
    return uuid.uuid4().hex


class Events:
    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []

    @hookimpl
    def flowport_task_started(self, task_name: str, parameters: dict) -> None:  # type: ignore[type-arg]
        self.seen.append(("started", task_name))

    @hookimpl
    def flowport_task_succeeded(self, task_name: str, duration: float) -> None:
        self.seen.append(("succeeded", task_name))

    @hookimpl
    def flowport_task_failed(
        self, task_name: str, exception: BaseException, duration: float
    ) -> None:
        self.seen.append(("failed", type(exception).__name__))

    @hookimpl
    def flowport_task_retried(self, name: str, attempt: int, **_: object) -> None:
        self.seen.append(("retried", f"{name}#{attempt}"))


@pytest.fixture
def events():  # type: ignore[no-untyped-def]
    ev = Events()
    register(ev)
    yield ev
    unregister(ev)


def test_signature_is_runs_own_with_defaults_rebound() -> None:
    add = Add(step=10)
    params = inspect.signature(add.fn).parameters
    assert list(params) == ["x", "step", "retry_policy"]
    assert params["step"].default == 10
    assert add.fn(1) == 11
    assert add.fn(1, step=2) == 3
    with pytest.raises(TypeError, match="no parameter"):
        Add(stepp=3)


def test_abstract_methods_enforced_at_class_creation() -> None:
    from flowport import RetryingTask

    class NoPredicate(RetryingTask):
        def run(self) -> None: ...

    with pytest.raises(TypeError, match="is_transient"):
        NoPredicate()  # type: ignore[abstract]


def test_task_run_in_flow_with_name_tags_and_run_name() -> None:
    captured: dict[str, object] = {}

    class Probe(Add):
        def run(self, x: int, step: int = 1) -> int:
            ctx = TaskRunContext.get()
            assert ctx is not None  # a real Prefect task run
            captured.update(name=ctx.task.name, tags=set(ctx.task_run.tags), run=ctx.task_run.name)
            return x + step

    probe = Probe(name="probe-task", tags=["extra"]).with_options(task_run_name="probe-{x}")

    @flow
    def f() -> int:
        return probe(41)

    assert f() == 42
    assert captured["name"] == "probe-task"
    assert {"flowport-test", "extra"} <= captured["tags"]  # type: ignore[operator]
    assert captured["run"] == "probe-41"


def test_in_task_retries_then_success_and_hooks(events: Events) -> None:
    k = key()
    fetch = FlakyFetch(retry_policy=FAST)

    @flow
    def f() -> int:
        return fetch(k, failures=2)

    assert f() == 3
    assert Flaky.counts[k] == 3
    assert ("started", "flaky_fetch") in events.seen
    assert ("succeeded", "flaky_fetch") in events.seen
    assert ("retried", "flaky_fetch#1") in events.seen and (
        "retried",
        "flaky_fetch#2",
    ) in events.seen


def test_retry_policy_overridable_per_call() -> None:
    k = key()
    fetch = FlakyFetch(retry_policy=FAST)

    @flow
    def f() -> None:
        fetch(k, failures=3, retry_policy=RetryPolicy(attempts=2, initial_delay=0, max_delay=0))

    with pytest.raises(ConnectionResetError):
        f()
    assert Flaky.counts[k] == 2


def test_permanent_error_one_attempt_even_with_prefect_retries(events: Events) -> None:
    Missing.calls = 0
    missing = Missing().with_options(retries=3, retry_delay_seconds=0)

    @flow
    def f() -> None:
        missing("bucket-x")

    with pytest.raises(NotFound, match="bucket-x"):
        f()
    assert Missing.calls == 1  # neither flowport nor Prefect retried it
    assert ("failed", "NotFound") in events.seen


def test_prefect_retries_do_retry_transient_failures() -> None:
    k = key()
    # flowport gives up after one attempt; Prefect's task-level retries take over.
    fetch = FlakyFetch(retry_policy=RetryPolicy(attempts=1)).with_options(
        retries=2, retry_delay_seconds=0
    )

    @flow
    def f() -> int:
        return fetch(k, failures=2)

    assert f() == 3


def test_submit_and_map() -> None:
    add = Add()

    @flow
    def f() -> tuple[int, list[int]]:
        fut = add.submit(1, step=5)
        mapped = add.map([1, 2, 3], step=100)
        return fut.result(), [m.result() for m in mapped]

    assert f() == (6, [101, 102, 103])


def test_with_options_keeps_type_and_changes_only_the_copy() -> None:
    add = Add()
    renamed = add.with_options(name="renamed", retry_policy=FAST)
    assert isinstance(renamed, Add)
    assert (add.name, renamed.name) == ("add", "renamed")
    assert renamed.retry_policy == FAST and add.retry_policy != FAST


def test_timeout_seconds_is_enforced() -> None:
    import time

    class Slow(Add):
        def run(self, x: int, step: int = 1) -> int:
            time.sleep(5)
            return x

    slow = Slow().with_options(timeout_seconds=0.5)

    @flow
    def f() -> int:
        return slow(1)

    with pytest.raises(TimeoutError):
        f()


def test_sync_task_in_async_flow_and_async_task_in_both() -> None:
    add, double = Add(), AsyncDouble(retry_policy=FAST)
    k = key()

    @flow
    async def af() -> tuple[int, int]:
        return add(1), await double(21, key=k, failures=1)

    @flow
    def sf() -> int:
        return double.submit(5).result()

    assert asyncio.run(af()) == (2, 42)
    assert Flaky.counts[k] == 2  # the async unit was retried once
    assert sf() == 10


def test_cloudpickle_round_trip_of_task_and_arguments() -> None:
    add = Add(step=3, retry_policy=FAST)
    clone = cloudpickle.loads(cloudpickle.dumps(add))
    assert isinstance(clone, Add)
    assert clone.name == "add" and clone.retry_policy == FAST
    assert clone.fn(1) == 4
    args = cloudpickle.loads(cloudpickle.dumps({"policy": FAST, "x": [1, 2]}))
    assert args["policy"] == FAST

    @flow
    def f() -> int:
        return clone(2)

    assert f() == 5


def test_runs_on_dask_task_runner() -> None:
    from prefect_dask import DaskTaskRunner

    add = Add(step=1)

    @flow(
        task_runner=DaskTaskRunner(
            cluster_kwargs={"n_workers": 1, "processes": True, "threads_per_worker": 1}
        )
    )
    def f() -> list[int]:
        return [fut.result() for fut in add.map([1, 2, 3])]

    assert f() == [2, 3, 4]


def test_payload_parameters_reach_a_dask_worker_whole() -> None:
    """Payloads are wrapped so Prefect does not walk them; the wrapper must survive the pickling
    a process-based runner does (Prefect's own annotations come back as a 1-tuple)."""
    from prefect_dask import DaskTaskRunner

    rows = [1, 2, 3]
    assert pickle.loads(pickle.dumps(_Payload(rows))).unwrap() == rows

    @flow(
        task_runner=DaskTaskRunner(
            cluster_kwargs={"n_workers": 1, "processes": True, "threads_per_worker": 1}
        )
    )
    def f() -> list[tuple[str, int]]:
        return [SumRows().submit("dask", rows).result(), SumRows().submit("kw", rows=rows).result()]

    assert f() == [("dask", 6), ("kw", 6)]
