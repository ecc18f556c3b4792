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


class _Flag:
    """A one-way threading.Event (set, is_set, wait) that allocates its Event only when
    someone waits: almost no attempt waits, and two Events per attempt cost a worker more
    than running a short task."""

    __slots__ = ("_event", "_set")
    _create = threading.Lock()

    def __init__(self) -> None:
        self._set = False
        self._event: threading.Event | None = None

    def is_set(self) -> bool:
        return self._set

    def set(self) -> None:
        self._set = True
        event = self._event
        if event is not None:
            event.set()

    def wait(self, timeout: float | None = None) -> bool:
        if self._set:
            return True
        with _Flag._create:  # one Event even when several threads start waiting at once
            if self._event is None:
                self._event = threading.Event()
            event = self._event
        if self._set:  # set() may have run before the Event existed
            event.set()
        return event.wait(timeout)


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
    _cancel: _Flag = field(default_factory=_Flag, repr=False)
    _soft: _Flag = field(default_factory=_Flag, repr=False)

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
