"""pluggy hook specifications: what a behaviour plugin may observe or adjust.

Implement any of these on an object (decorated with :data:`hookimpl`) and pass it to
``flowport.plugins.register(obj)``, or name it in the ``flowport.plugins`` entry point group.
Hooks fired inside a flowport task (``task_started`` .. ``task_failed``, ``units_moved``, and
retries in the task's own thread) can ask :func:`flowport.progress.current_task` which task
and connector they belong to.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from flowport.retry import RetryPolicy

hookspec = pluggy.HookspecMarker("flowport")
hookimpl = pluggy.HookimplMarker("flowport")


@hookspec(firstresult=True)
def flowport_retry_policy(task_name: str, policy: RetryPolicy) -> RetryPolicy | None:
    """Adjust the retry policy a task run is about to use; return None to keep it."""


@hookspec
def flowport_task_started(task_name: str, parameters: dict[str, Any]) -> None:
    """A flowport task began running."""


@hookspec
def flowport_task_retried(
    name: str, attempt: int, attempts: int, delay: float, exception: BaseException
) -> None:
    """Attempt ``attempt`` of ``attempts`` of a unit failed transiently; next try in ``delay`` s."""


@hookspec
def flowport_task_succeeded(task_name: str, duration: float) -> None:
    """A flowport task finished successfully after ``duration`` seconds."""


@hookspec
def flowport_task_failed(task_name: str, exception: BaseException, duration: float) -> None:
    """A flowport task raised ``exception`` after ``duration`` seconds."""


@hookspec
def flowport_transfer_progress(task_name: str, unit: str, done: int, total: int | None) -> None:
    """A transfer advanced: ``done`` of ``total`` ``unit`` (bytes, rows, messages)."""


@hookspec
def flowport_units_moved(task_name: str, connector: str, unit: str, amount: int) -> None:
    """``amount`` more ``unit`` (bytes, rows, messages) moved by a run of ``task_name``.

    Reported as the transfer goes (throttled like progress) and the remainder when it ends,
    also when it fails, so the amounts of one transfer add up to exactly what moved. Outside a
    flowport task ``task_name`` and ``connector`` are empty.
    """
