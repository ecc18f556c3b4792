"""Task events: the one hook interface cross-cutting features plug into (telemetry; later
workflow advance and the operations counters), so the task path calls one object instead of
module globals, and no feature reaches into another module's state.

The path announces three events, in a task's order:
- stored: submission.py wraps each store call of new tasks in `storing(specs)`, a context
  whose `stored(submitted, tasks)` gets what the store made of each task. It opens before the
  store call, so a hook may still add to the specs (telemetry writes trace context into
  their headers), and closes after it, with the exception if the call failed.
- leased: dispatch.py (streamed and sync-matched leases, Poll) calls `leased(leased, worker_id)`.
- finished: completion.py calls `finished(entries, outcomes)` once acks are recorded (retries
  too: an outcome's state says which).
Hooks run inline on the event loop, on the hot path: they must be cheap and never await.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from conveyor.v1 import task_pb2
    from conveyor_scheduler.store import AckEntry, Submitted
    from conveyor_scheduler.validation import NewTask


class Storing(Protocol):
    """One hook's view of one batch of new tasks, from before its store call to after it."""

    def __enter__(self) -> Storing: ...

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object) -> None: ...

    def stored(self, submitted: Sequence[Submitted], tasks: Sequence[NewTask]) -> None:
        """What the store made of each task (`tasks`, the validated specs): id, queue, state, duplicate."""


class _NotStoring:
    """`storing` of a hook that does not follow submits: does nothing."""

    __slots__ = ()

    def __enter__(self) -> _NotStoring:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def stored(self, submitted: Sequence[Submitted], tasks: Sequence[NewTask]) -> None:
        return None


NOT_STORING = _NotStoring()


class TaskEvents:
    """One hook. Every event does nothing here: a hook overrides the ones it follows."""

    __slots__ = ()

    def storing(self, specs: Sequence[task_pb2.TaskSpec]) -> Storing:
        """New tasks are about to be stored (see the module doc)."""
        return NOT_STORING

    def leased(self, leased: Sequence[task_pb2.LeasedTask], worker_id: str) -> None:
        """These attempts were just leased to `worker_id`, streamed or polled (maybe none)."""

    def finished(self, entries: Sequence[tuple[str, AckEntry]], outcomes: Sequence[task_pb2.AckOutcome]) -> None:
        """Acks of (queue, entry) were recorded with these outcomes (refused ones too: see their status)."""


class TaskEventHooks(TaskEvents):
    """The hooks of one replica, called in the order they were added. With none added every
    event costs one call and a check."""

    __slots__ = ("_hooks",)

    def __init__(self) -> None:
        self._hooks: tuple[TaskEvents, ...] = ()

    def add(self, hook: TaskEvents) -> None:
        self._hooks = (*self._hooks, hook)

    def storing(self, specs: Sequence[task_pb2.TaskSpec]) -> Storing:
        hooks = self._hooks
        if not hooks:
            return NOT_STORING
        if len(hooks) == 1:
            return hooks[0].storing(specs)
        return _EachStoring([hook.storing(specs) for hook in hooks])

    def leased(self, leased: Sequence[task_pb2.LeasedTask], worker_id: str) -> None:
        for hook in self._hooks:
            hook.leased(leased, worker_id)

    def finished(self, entries: Sequence[tuple[str, AckEntry]], outcomes: Sequence[task_pb2.AckOutcome]) -> None:
        for hook in self._hooks:
            hook.finished(entries, outcomes)


class _EachStoring:
    """`storing` of several hooks: each is told, closed in the reverse order of opening."""

    __slots__ = ("_each",)

    def __init__(self, each: list[Storing]) -> None:
        self._each = each

    def __enter__(self) -> _EachStoring:
        for storing in self._each:
            storing.__enter__()
        return self

    def stored(self, submitted: Sequence[Submitted], tasks: Sequence[NewTask]) -> None:
        for storing in self._each:
            storing.stored(submitted, tasks)

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        for storing in reversed(self._each):
            storing.__exit__(exc_type, exc, tb)
