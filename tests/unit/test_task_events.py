"""The task-events hooks (task_events.TaskEventHooks): every hook hears every event, in the order
they were added; a storing context opens before the store call and closes after it, in reverse
order, with the store call's exception; with no hook an event does nothing."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from conveyor.v1 import task_pb2
from conveyor_scheduler.store import AckEntry, Submitted
from conveyor_scheduler.task_events import NOT_STORING, TaskEventHooks, TaskEvents
from conveyor_scheduler.validation import NewTask


class Recorder(TaskEvents):
    def __init__(self, name: str, log: list[tuple[str, ...]]) -> None:
        self.name = name
        self.log = log

    def storing(self, specs: Sequence[task_pb2.TaskSpec]) -> Recorder.Storing:
        self.log.append((self.name, "storing", str(len(specs))))
        return Recorder.Storing(self)

    def leased(self, leased: Sequence[task_pb2.LeasedTask], worker_id: str) -> None:
        self.log.append((self.name, "leased", worker_id))

    def finished(self, entries: Sequence[tuple[str, AckEntry]], outcomes: Sequence[task_pb2.AckOutcome]) -> None:
        self.log.append((self.name, "finished", str(len(outcomes))))

    class Storing:
        def __init__(self, hook: Recorder) -> None:
            self.hook = hook

        def __enter__(self) -> Recorder.Storing:
            self.hook.log.append((self.hook.name, "enter"))
            return self

        def stored(self, submitted: Sequence[Submitted], tasks: Sequence[NewTask]) -> None:
            self.hook.log.append((self.hook.name, "stored", submitted[0].id))

        def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
            self.hook.log.append((self.hook.name, "exit", type(exc).__name__ if exc else ""))


def test_every_hook_hears_every_event_in_order() -> None:
    log: list[tuple[str, ...]] = []
    hooks = TaskEventHooks()
    hooks.add(Recorder("a", log))
    hooks.add(Recorder("b", log))
    with hooks.storing([task_pb2.TaskSpec(name="t")]) as storing:
        storing.stored([Submitted("id-1", "q", 2, False)], [])
    hooks.leased([], "w-1")
    hooks.finished([], [task_pb2.AckOutcome()])
    assert log == [("a", "storing", "1"), ("b", "storing", "1"), ("a", "enter"), ("b", "enter"),
                   ("a", "stored", "id-1"), ("b", "stored", "id-1"), ("b", "exit", ""), ("a", "exit", ""),
                   ("a", "leased", "w-1"), ("b", "leased", "w-1"), ("a", "finished", "1"), ("b", "finished", "1")]


def test_a_failed_store_call_closes_every_storing_context_with_its_error() -> None:
    log: list[tuple[str, ...]] = []
    hooks = TaskEventHooks()
    hooks.add(Recorder("a", log))
    hooks.add(Recorder("b", log))
    with pytest.raises(ConnectionError), hooks.storing([]):
        raise ConnectionError("redis went away")
    assert log[-2:] == [("b", "exit", "ConnectionError"), ("a", "exit", "ConnectionError")]


def test_one_hook_gets_its_own_context_and_none_costs_nothing() -> None:
    log: list[tuple[str, ...]] = []
    hooks = TaskEventHooks()
    assert hooks.storing([]) is NOT_STORING
    hooks.leased([], "w")
    hooks.finished([], [])
    hooks.add(Recorder("a", log))
    assert isinstance(hooks.storing([]), Recorder.Storing)
    assert TaskEvents().storing([]) is NOT_STORING  # the base hook follows nothing
