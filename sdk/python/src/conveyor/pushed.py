"""Results the scheduler pushes on a client's Pipeline stream (TaskSpec.push_result), kept for
the handles still alive, so `result()` of a finished task answers from memory and a waiting
one wakes on the push.

The stream's reader makes a slot for each task the scheduler promised to push (it does so
before the submit's caller sees the answer, so no push can come first) and fills it when the
push arrives. A handle's death releases its slot. A broken stream resolves its open slots
with None: the push is lost with the stream, and the caller reads the result instead.
Shared by the sync and async clients (a concurrent.futures.Future is awaitable through
asyncio.wrap_future).
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from collections.abc import Callable, Generator, Iterable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from conveyor.common import MAX_WAIT_CHUNK, TaskState
from conveyor.errors import ResultTimeout
from conveyor.v1 import task_pb2, task_service_pb2

Slot = Future["task_service_pb2.GetResultResponse | None"]
"""A pushed result to come; None once it never will (the stream broke)."""


def final(result: task_service_pb2.GetResultResponse | None) -> bool:
    """A pushed result that stays true: SUCCEEDED. Any other end can be undone (a retried or
    requeued task runs again), so the SDK treats its push as a wake-up and reads the state."""
    return result is not None and result.state == task_pb2.TASK_STATE_SUCCEEDED


def in_order(ids: list[str], pushed: dict[str, task_service_pb2.GetResultResponse],
             read: list[task_service_pb2.GetResultResponse]) -> list[task_service_pb2.GetResultResponse]:
    """The results of `ids` in order, from those pushed and those read (of the other ids)."""
    if not pushed:
        return read
    by_id = {r.task_id: r for r in read}
    return [pushed[i] if i in pushed else by_id[i] for i in ids]


class PushedResults:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._slots: dict[str, Slot] = {}

    def __len__(self) -> int:
        return len(self._slots)

    def expect(self, tasks: Iterable[task_service_pb2.SubmittedTask]) -> None:
        """The reader, before answering a submit: slots for the tasks whose result comes pushed."""
        with self._lock:
            for task in tasks:
                if task.result_pushed and task.id not in self._slots:
                    self._slots[task.id] = Future()

    def deliver(self, results: Iterable[task_service_pb2.GetResultResponse]) -> None:
        """The reader, on a push: fills the slots still held (the others' handles are gone)."""
        for result in results:
            slot = self._slots.get(result.task_id)
            if slot is not None and not slot.done():
                slot.set_result(result)

    def stream_broken(self) -> None:
        """What was not pushed yet never will be: waiters read instead."""
        with self._lock:
            slots = list(self._slots.values())
        for slot in slots:
            if not slot.done():
                slot.set_result(None)

    def slot(self, task_id: str) -> Slot | None:
        return self._slots.get(task_id)

    def results(self, task_ids: Iterable[str]) -> dict[str, task_service_pb2.GetResultResponse]:
        """The `final` pushed results already here among `task_ids`."""
        out = {}
        for task_id in task_ids:
            slot = self._slots.get(task_id)
            if slot is not None and slot.done() and final(result := slot.result()):
                out[task_id] = result
        return out

    def keep_for(self, handle: object, source: str | Future[Any] | asyncio.Future[Any]) -> None:
        """Keeps the pushed result of `source` (a task id, or a send's future answered with its
        SubmitResponse) while `handle` lives, and releases it when the handle is collected."""
        if isinstance(source, str) and source not in self._slots:
            return  # not pushed: nothing to keep
        weakref.finalize(handle, self._release_source, source)

    def _release_source(self, source: str | Future[Any] | asyncio.Future[Any]) -> None:
        if isinstance(source, str):
            self._release([source])
        elif source.done():
            self._release_answer(source)
        else:
            source.add_done_callback(self._release_answer)  # type: ignore[arg-type]

    def _release_answer(self, future: Future[Any] | asyncio.Future[Any]) -> None:
        if not future.cancelled() and future.exception() is None:
            self._release(t.id for t in future.result().tasks)

    def _release(self, task_ids: Iterable[str]) -> None:
        with self._lock:
            for task_id in task_ids:
                self._slots.pop(task_id, None)


@dataclass(frozen=True, slots=True)
class AwaitPush:
    """Step of `waiting`: wait up to `timeout` for the slot; send back (its value, True), or
    (None, False) if it did not come in time."""

    slot: Slot
    timeout: float


@dataclass(frozen=True, slots=True)
class Read:
    """Step of `waiting`: read the task's result (GetResult waiting up to `wait`, or not at
    all); send back the GetResultResponse."""

    wait: float | None


FIRST_CHECK_S = 1.0
"""A pushed result not here after this long is checked with a plain read, then after twice as
long, and so on up to MAX_WAIT_CHUNK: a push that never comes (a bug, a replica lost between
the ack and the push) costs a wait of about the time already waited, never a hang."""

Steps = Generator[AwaitPush | Read, Any, "task_service_pb2.GetResultResponse"]


def waiting(task_id: str, timeout: float | None, slot: Slot | None, now: Callable[[], float]) -> Steps:
    """How `result()` waits, written once for both clients (each runs the steps its own way):
    a pushed result is waited for in memory, with a plain read as a check after FIRST_CHECK_S
    and then at doubling intervals; without one (or once its push says the stream broke, or the task did not
    succeed) it reads with a waiting GetResult. Returns the terminal result or raises ResultTimeout."""
    deadline = None if timeout is None else now() + timeout
    check = FIRST_CHECK_S
    while True:
        remaining = MAX_WAIT_CHUNK if deadline is None else min(MAX_WAIT_CHUNK, deadline - now())
        if slot is not None:
            pushed, arrived = yield AwaitPush(slot, max(min(remaining, check), 0.0))
            check = min(2 * check, MAX_WAIT_CHUNK)
            if arrived:
                if final(pushed):
                    return pushed  # type: ignore[no-any-return]
                slot = None  # the stream broke, or the task did not succeed: read its state from now on
                continue
            resp = yield Read(None)
        else:
            resp = yield Read(max(remaining, 0.001))
        if TaskState(resp.state).terminal:
            return resp  # type: ignore[no-any-return]
        if deadline is not None and now() >= deadline:
            raise ResultTimeout(f"task {task_id} did not finish within {timeout}s (it is {TaskState(resp.state).name})")
