"""The running task's context, for handlers (Celery's `bind=True`, without changing signatures).

    from conveyor import current_task

    @app.task
    def export(rows: int) -> int:
        ctx = current_task()
        for chunk in range(rows // 1000):
            if ctx.cancelled or ctx.soft_time_limit_exceeded:
                break       # a plain function checks the flags; async handlers are cancelled
            ...
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class TaskContext:
    """What a handler may want to know about the attempt it is running."""

    id: str
    name: str
    queue: str
    attempt: int
    """1 for the first attempt."""
    max_retries: int
    headers: Mapping[str, str]
    deadline: float
    """Hard time limit, as a time.time() timestamp."""
    soft_deadline: float | None = None
    _cancel: threading.Event = field(default_factory=threading.Event, repr=False)
    _soft: threading.Event = field(default_factory=threading.Event, repr=False)

    @property
    def cancelled(self) -> bool:
        """True once a cancel was requested for this task."""
        return self._cancel.is_set()

    @property
    def soft_time_limit_exceeded(self) -> bool:
        """True once the attempt ran past its soft time limit."""
        return self._soft.is_set()

    @property
    def is_last_attempt(self) -> bool:
        return self.attempt > self.max_retries


_current: contextvars.ContextVar[TaskContext] = contextvars.ContextVar("conveyor_task")


def current_task() -> TaskContext:
    """The context of the task this code runs in (LookupError outside a task)."""
    try:
        return _current.get()
    except LookupError:
        raise LookupError("current_task() is only available inside a running Conveyor task") from None


def bind(ctx: TaskContext) -> contextvars.Token[TaskContext]:
    """Makes `ctx` current (used by the worker)."""
    return _current.set(ctx)
