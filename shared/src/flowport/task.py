"""``RetryingTask``: the one base class of every prebuilt flowport task.

A subclass implements ``run(...)`` and ``is_transient(exc)``; the base turns ``run`` into a real
Prefect task (names, tags, ``.submit()``, ``.map()``, ``.with_options()``) whose parameters are
``run``'s own, with the instance's defaults rebound into them. Inside ``run``,
``self.retrying(fn, ...)`` retries one idempotent unit under the task's :class:`RetryPolicy`.

Prefect's own ``retries`` stay off by default; if a user turns them on, permanent flowport errors
are still never retried by Prefect.
"""

from __future__ import annotations

import abc
import contextvars
import copy
import inspect
import re
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, TypeVar, cast

from prefect import Task, unmapped
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import State, TaskRun
from prefect.tasks import _generate_task_key
from prefect.utilities.annotations import opaque
from pydantic import BaseModel
from typing_extensions import ParamSpec, Self

from flowport.blocks import refuse_foreign_arguments
from flowport.errors import is_permanent
from flowport.lineage import Lineage, report
from flowport.plugins import hook
from flowport.progress import enter_task, leave_task
from flowport.retry import Retrier, RetryPolicy

if TYPE_CHECKING:
    from prefect.futures import PrefectFuture, PrefectFutureList

T = TypeVar("T")
P = ParamSpec("P")
R = TypeVar("R", covariant=True)


class _Runs(Protocol[P, R]):
    """What type checkers see of a task: its ``run``, whose parameters and return type every
    call, ``.submit()`` and ``.fn`` take on."""

    def run(self, *args: P.args, **kwargs: P.kwargs) -> R: ...


_retrier: contextvars.ContextVar[Retrier | None] = contextvars.ContextVar(
    "flowport_retrier", default=None
)


def retry_unless_permanent(task: Task[Any, Any], task_run: TaskRun, state: State[Any]) -> bool:
    """Prefect ``retry_condition_fn``: let Prefect retry anything but a permanent flowport error."""
    exc = state.data if isinstance(state.data, BaseException) else None
    if exc is None:
        try:
            exc = state.result(raise_on_failure=False)
        except Exception:  # the result may be unreadable; then let Prefect decide
            return True
    return not (isinstance(exc, BaseException) and is_permanent(exc))


def _task_name(cls: type) -> str:
    """``UploadFile`` -> ``upload_file``."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", cls.__name__).lower()


def _whole(value: Any) -> Any:
    return unmapped(value) if isinstance(value, BaseModel) else value


class _Payload(opaque):
    """Prefect's ``opaque`` that survives pickling: Prefect's annotations come back from pickle
    (Dask, process pools) wrapping a 1-tuple, so a task on a Dask worker got ``(rows,)``."""

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.unwrap(),))


class RetryingTask(abc.ABC):
    """A prebuilt Prefect task whose idempotent units retry transient errors only.

    Subclasses set the class attributes below and implement :meth:`run` and
    :meth:`is_transient`. Keyword arguments given at ``__init__`` that name parameters of
    ``run`` become that instance's defaults; a caller may still pass them per call, as may
    ``retry_policy``. Defaults carry no payload hashing: ``cache_policy`` is ``NO_CACHE``.
    """

    #: Prefect task name; defaults to the class name in snake_case.
    task_name: ClassVar[str | None] = None
    #: Tags every run of this task carries.
    tags: ClassVar[tuple[str, ...]] = ()
    #: The in-task retry policy; overridable per instance and per call.
    retry_policy: RetryPolicy = RetryPolicy()
    #: Parameters that carry data (row lists, bytes): Prefect resolves a future passed there
    #: but never walks the value looking for inputs, which costs seconds on large lists.
    payload_params: ClassVar[tuple[str, ...]] = ()

    def __init__(
        self,
        *,
        name: str | None = None,
        tags: Iterable[str] | None = None,
        retry_policy: RetryPolicy | None = None,
        task_options: dict[str, Any] | None = None,
        **defaults: Any,
    ):
        run_sig = inspect.signature(type(self).run)
        params = list(run_sig.parameters.values())[1:]  # drop self
        unknown = set(defaults) - {p.name for p in params}
        if unknown:
            raise TypeError(
                f"{type(self).__name__} has no parameter(s) {sorted(unknown)} to default"
            )
        if retry_policy is not None:
            self.retry_policy = retry_policy
        params = [p.replace(default=defaults[p.name]) if p.name in defaults else p for p in params]
        if "retry_policy" not in run_sig.parameters:
            params.append(
                inspect.Parameter(
                    "retry_policy",
                    inspect.Parameter.KEYWORD_ONLY,
                    default=None,
                    annotation=RetryPolicy | None,
                )
            )
        self.defaults = defaults
        self.signature = run_sig.replace(parameters=params)
        options: dict[str, Any] = {
            "name": name or self.task_name or _task_name(type(self)),
            "tags": [*self.tags, *(tags or ())],
            "cache_policy": NO_CACHE,
            "retries": 0,
            "retry_condition_fn": retry_unless_permanent,
            "description": inspect.getdoc(type(self)),
        }
        options.update(task_options or {})
        self._key_name = str(options["name"])
        self._task: Task[Any, Any] = Task(fn=self._make_fn(), **options)
        self.__signature__ = self.signature  # inspect.signature(task) shows run's parameters
        self._reports_lineage = type(self).lineage is not RetryingTask.lineage
        self._payload_positions = {
            name: i
            for i, name in enumerate(self.signature.parameters)
            if name in self.payload_params
            and self.signature.parameters[name].kind is inspect.Parameter.POSITIONAL_OR_KEYWORD
        }

    # -- what subclasses provide ---------------------------------------------------------

    @abc.abstractmethod
    def run(self, *args: Any, **kwargs: Any) -> Any:
        """The task body. Plain Python; wrap each idempotent unit in ``self.retrying``."""

    @abc.abstractmethod
    def is_transient(self, exc: BaseException) -> bool:
        """True when ``exc`` may pass on a retry (throttling, 5xx, dropped connection, ...)."""

    def lineage(self, arguments: dict[str, Any], result: Any) -> Lineage | None:
        """What this call read and wrote, reported as Prefect assets (:mod:`flowport.lineage`);
        ``result`` is None when ``run`` raised. The default reports nothing, at no cost."""
        return None

    # -- retrying inside run() -----------------------------------------------------------

    @property
    def retrier(self) -> Retrier:
        """The retrier of the current call (its per-call policy), or the instance default.

        Capture it before handing work to threads: context variables do not cross into
        thread pools.
        """
        return _retrier.get() or self.retry_policy.bind(self.is_transient, self.name)

    def retrying(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """Run one idempotent unit, retrying transient failures."""
        return self.retrier(fn, *args, **kwargs)

    async def aretrying(self, fn: Callable[..., Awaitable[T]], /, *args: Any, **kwargs: Any) -> T:
        """Await one idempotent unit, retrying transient failures."""
        return await self.retrier.acall(fn, *args, **kwargs)

    # -- Prefect wiring ------------------------------------------------------------------

    def _prepare(
        self, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[inspect.BoundArguments, contextvars.Token[Retrier | None], float]:
        bound = self.signature.bind(*args, **kwargs)
        bound.apply_defaults()
        refuse_foreign_arguments(self.name, self.signature, bound.arguments)
        policy = bound.arguments.pop("retry_policy", None) or self.retry_policy
        relay = hook()
        policy = relay.flowport_retry_policy(task_name=self.name, policy=policy) or policy
        token = _retrier.set(policy.bind(self.is_transient, self.name))
        enter_task(self.name, type(self))  # hooks and transfers know their task and connector
        relay.flowport_task_started(task_name=self.name, parameters=bound.arguments)
        return bound, token, time.perf_counter()

    def _finish(
        self,
        token: contextvars.Token[Retrier | None],
        started: float,
        exc: BaseException | None,
        bound: inspect.BoundArguments,
        result: Any = None,
    ) -> None:
        _retrier.reset(token)
        if self._reports_lineage:
            report(self, bound.arguments, result)
        duration = time.perf_counter() - started
        try:
            if exc is None:
                hook().flowport_task_succeeded(task_name=self.name, duration=duration)
            else:
                hook().flowport_task_failed(task_name=self.name, exception=exc, duration=duration)
        finally:
            leave_task()

    def _invoke(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        bound, token, started = self._prepare(args, kwargs)
        try:
            result = self.run(*bound.args, **bound.kwargs)
        except BaseException as exc:
            self._finish(token, started, exc, bound)
            raise
        self._finish(token, started, None, bound, result)
        return result

    async def _ainvoke(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        bound, token, started = self._prepare(args, kwargs)
        try:
            result = await self.run(*bound.args, **bound.kwargs)
        except BaseException as exc:
            self._finish(token, started, exc, bound)
            raise
        self._finish(token, started, None, bound, result)
        return result

    def _make_fn(self) -> Callable[..., Any]:
        """A function with ``run``'s signature (defaults rebound) for Prefect to wrap.

        It closes over ``self`` only, so cloudpickle ships it (by value) with the instance.
        """
        run = type(self).run
        if inspect.iscoroutinefunction(run):

            async def fn(*args: Any, **kwargs: Any) -> Any:
                return await self._ainvoke(args, kwargs)

        else:

            def fn(*args: Any, **kwargs: Any) -> Any:  # type: ignore[misc]
                return self._invoke(args, kwargs)

        return self._label(fn, run)

    def _label(self, fn: Callable[..., Any], run: Callable[..., Any]) -> Callable[..., Any]:
        """Give ``fn`` ``run``'s name, docs and signature, and a qualname Prefect's task key is
        derived from.

        Prefect keys a task by its function's qualname (last part) and a hash of its code, and
        derives it again in every copy (``with_options``, task workers' ``serve``). All flowport
        tasks share one code object, so the qualname carries module, class and task name: the
        key is distinct per task and the same in every process and copy.
        """
        cls = type(self)
        where = f"{cls.__module__}.{cls.__qualname__}".replace(".", "_")
        fn.__name__ = run.__name__
        fn.__doc__ = run.__doc__
        fn.__qualname__ = f"{cls.__qualname__}.{self._key_name}__{where}"
        fn.__module__ = cls.__module__
        fn.__signature__ = self.signature  # type: ignore[attr-defined]
        return fn

    @property
    def name(self) -> str:
        return self._task.name

    @property
    def fn(self: _Runs[P, R]) -> Callable[P, R]:
        """The task body without Prefect (no task run), still with flowport's retries and hooks."""
        this: RetryingTask = self  # type: ignore[assignment]
        body: Callable[P, R] = this._task.fn
        return body

    @property
    def prefect_task(self) -> Task[Any, Any]:
        """The underlying ``prefect.Task``."""
        return self._task

    def _shield(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
        """Wrap payload arguments in ``opaque`` so Prefect does not traverse them."""
        if self.payload_params:
            args = tuple(
                _Payload(a) if i in self._payload_positions.values() else a
                for i, a in enumerate(args)
            )
            for name in self.payload_params:
                if name in kwargs:
                    kwargs[name] = _Payload(kwargs[name])
        return args

    def __call__(self: _Runs[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
        this: RetryingTask = self  # type: ignore[assignment]
        return cast(R, this._task(*this._shield(args, kwargs), **kwargs))

    def submit(self: _Runs[P, R], *args: P.args, **kwargs: P.kwargs) -> PrefectFuture[R]:
        this: RetryingTask = self  # type: ignore[assignment]
        future: PrefectFuture[R] = this._task.submit(*this._shield(args, kwargs), **kwargs)
        return future

    def map(self: _Runs[..., R], *args: Any, **kwargs: Any) -> PrefectFutureList[R]:
        """Prefect's ``map``; blocks and retry policies (pydantic models, which iterate as their
        fields) are passed to every run whole, as if wrapped in ``unmapped``."""
        this: RetryingTask = self  # type: ignore[assignment]
        args = tuple(_whole(a) for a in args)
        kwargs = {k: _whole(v) for k, v in kwargs.items()}
        futures: PrefectFutureList[R] = this._task.map(*args, **kwargs)
        return futures

    def with_options(self, *, retry_policy: RetryPolicy | None = None, **options: Any) -> Self:
        """A copy with Prefect task options (name, tags, retries, timeout_seconds, ...) changed
        and, optionally, another in-task retry policy. New tags add to the connector's own."""
        new = copy.copy(self)
        if retry_policy is not None:
            new.retry_policy = retry_policy
        if "tags" in options:
            options["tags"] = list(dict.fromkeys([*self.tags, *(options["tags"] or ())]))
        new._task = self._task.with_options(**options)
        new._key_name = new._task.name
        new._task.fn = new._make_fn()
        new._task.task_key = _generate_task_key(new._task.fn)  # as Prefect derives it
        return new

    def __getattr__(self, item: str) -> Any:
        # Anything else a Prefect task has (retries, timeout_seconds, task_key, ...).
        if item.startswith("__") or "_task" not in self.__dict__:
            raise AttributeError(item)
        return getattr(self._task, item)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"
