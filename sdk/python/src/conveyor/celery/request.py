"""`self.request` of a bound task: the attempt that runs, in Celery's words, read from Conveyor's
`current_task()` plus the arguments the handler was called with (which the context lacks)."""

from __future__ import annotations

import contextvars
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from conveyor.context import TaskContext, current_task

HOSTNAME = f"conveyor@{socket.gethostname()}"
"""What self.request.hostname says (Celery's is the worker's node name, celery@HOST)."""


@dataclass(frozen=True, slots=True)
class Called:
    """How the running handler was called: its arguments, and whether by task.apply() (eagerly)."""

    args: tuple[Any, ...]
    kwargs: Mapping[str, Any]
    eager: bool = False


_called: contextvars.ContextVar[Called] = contextvars.ContextVar("conveyor_celery_called")


def calling(called: Called) -> contextvars.Token[Called]:
    """Records the arguments of the handler about to run (undone with `done`)."""
    return _called.set(called)


def done(token: contextvars.Token[Called]) -> None:
    _called.reset(token)


@dataclass(frozen=True, slots=True)
class Request:
    """Celery's task request. Outside a task (the function called directly) `called_directly`
    is True and `id` is None, as in Celery."""

    id: str | None = None
    task: str | None = None
    retries: int = 0
    """Retries so far: Conveyor's attempt minus one (an attempt cut short by a lost worker counts)."""
    args: tuple[Any, ...] | None = None
    kwargs: Mapping[str, Any] | None = None
    delivery_info: Mapping[str, Any] = field(default_factory=dict)
    """{'routing_key': the task's queue, 'exchange': '', 'redelivered': an earlier attempt ran}."""
    headers: Mapping[str, str] = field(default_factory=dict)
    hostname: str | None = None
    is_eager: bool = False
    called_directly: bool = True
    max_retries: int | None = None
    """The attempt's retry limit as the scheduler holds it."""
    eta: Any = None
    expires: Any = None
    timelimit: tuple[float | None, float | None] = (None, None)
    root_id: str | None = None
    parent_id: str | None = None
    group: str | None = None
    chord: Any = None
    callbacks: Any = None
    errbacks: Any = None

    @property
    def correlation_id(self) -> str | None:
        return self.id

    @classmethod
    def current(cls) -> Request:
        """The request of the attempt running in this context, or the empty one."""
        try:
            ctx: TaskContext = current_task()
        except LookupError:
            return cls()
        called = _called.get(None)
        return cls(id=ctx.id, task=ctx.name, retries=max(ctx.attempt - 1, 0),
                   args=called.args if called else None, kwargs=called.kwargs if called else None,
                   delivery_info={"exchange": "", "routing_key": ctx.queue, "redelivered": ctx.attempt > 1},
                   headers=dict(ctx.headers), hostname=HOSTNAME, is_eager=bool(called and called.eager),
                   called_directly=False, max_retries=ctx.max_retries)
