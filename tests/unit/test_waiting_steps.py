"""`pushed.waiting`, the one waiting policy of both clients, driven step by step with a fake clock."""

from __future__ import annotations

from concurrent.futures import Future

import pytest

from conveyor import ResultTimeout
from conveyor.pushed import FIRST_CHECK_S, AwaitPush, Read, waiting
from conveyor.v1 import task_pb2, task_service_pb2

QUEUED, SUCCEEDED, DEAD = task_pb2.TASK_STATE_QUEUED, task_pb2.TASK_STATE_SUCCEEDED, task_pb2.TASK_STATE_DEAD


def result(state: int) -> task_service_pb2.GetResultResponse:
    return task_service_pb2.GetResultResponse(task_id="t", state=state)


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_a_push_that_never_comes_is_checked_at_doubling_intervals() -> None:
    clock, slot = Clock(), Future()  # type: ignore[var-annotated]
    steps = waiting("t", None, slot, clock)
    waits = []
    step = next(steps)
    for _ in range(4):
        assert isinstance(step, AwaitPush)
        waits.append(step.timeout)
        clock.t += step.timeout
        check = steps.send((None, False))
        assert isinstance(check, Read) and check.wait is None  # a plain read, no server-side wait
        step = steps.send(result(QUEUED))
    assert waits == [FIRST_CHECK_S, 2 * FIRST_CHECK_S, 4 * FIRST_CHECK_S, 8 * FIRST_CHECK_S]
    with pytest.raises(StopIteration) as done:  # the check finds it finished: no push needed
        clock.t += 1
        steps.send((None, False))
        steps.send(result(SUCCEEDED))
    assert done.value.value.state == SUCCEEDED


def test_a_pushed_success_ends_the_wait_and_anything_else_is_read() -> None:
    clock, slot = Clock(), Future()  # type: ignore[var-annotated]
    steps = waiting("t", 10.0, slot, clock)
    assert isinstance(next(steps), AwaitPush)
    with pytest.raises(StopIteration) as done:
        steps.send((result(SUCCEEDED), True))
    assert done.value.value.state == SUCCEEDED
    steps = waiting("t", 10.0, slot, clock)
    next(steps)
    read = steps.send((result(DEAD), True))  # a dead task may be requeued: read its state, waiting
    assert isinstance(read, Read) and read.wait is not None and read.wait > 0


def test_the_timeout_holds_while_waiting_for_a_push() -> None:
    clock, slot = Clock(), Future()  # type: ignore[var-annotated]
    steps = waiting("t", 1.5, slot, clock)
    step = next(steps)
    assert isinstance(step, AwaitPush) and step.timeout == FIRST_CHECK_S
    clock.t += step.timeout
    steps.send((None, False))
    step = steps.send(result(QUEUED))
    assert isinstance(step, AwaitPush) and step.timeout == pytest.approx(0.5)
    clock.t += step.timeout
    steps.send((None, False))
    with pytest.raises(ResultTimeout):
        steps.send(result(QUEUED))
