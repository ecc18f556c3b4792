"""How a workflow is followed (workflow_waiting.following, behind result() and watch() of both
handles), step by step with a fake clock; and what a snapshot's end stands for."""

from __future__ import annotations

from typing import Any

import grpc
import pytest

from conveyor import (
    NodeSnapshot,
    NotFound,
    ResultTimeout,
    RPCError,
    TaskState,
    Unavailable,
    WorkflowCancelled,
    WorkflowError,
    WorkflowFailed,
    WorkflowSnapshot,
    WorkflowState,
)
from conveyor.v1 import task_pb2
from conveyor.v1 import workflow_pb2 as wf
from conveyor.workflow_waiting import (
    ENDED,
    FIRST_PAUSE,
    MAX_PAUSE,
    POLL_EVERY,
    READ_NEXT,
    OpenWatch,
    Poll,
    Seen,
    following,
)

RUNNING, SUCCEEDED, FAILED, CANCELLED = (wf.WORKFLOW_STATE_RUNNING, wf.WORKFLOW_STATE_SUCCEEDED,
                                         wf.WORKFLOW_STATE_FAILED, wf.WORKFLOW_STATE_CANCELLED)


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def snap(state: int = RUNNING, finished: int = 0, **fields: Any) -> WorkflowSnapshot:
    msg = wf.Workflow(id="wf_1", state=state, finished_nodes=finished,  # type: ignore[arg-type]
                      nodes=[wf.NodeState(key="0"), wf.NodeState(key="1")], **fields)
    return WorkflowSnapshot.of(msg)


class Driver:
    """Runs the steps as a transport would, from a script of replies; records the steps and the
    snapshots handed out."""

    def __init__(self, timeout: float | None = None, outage: float = 30.0) -> None:
        self.clock = Clock()
        self.steps = following("wf_1", timeout, outage, self.clock)
        self.seen: list[WorkflowSnapshot] = []
        self.step: Any = next(self.steps)

    def send(self, reply: Any, elapsed: float = 0.0) -> Any:
        """Answers the current step (after `elapsed` seconds); returns the next step, None at the end."""
        self.clock.t += elapsed
        try:
            out = self.steps.send(reply)
            while isinstance(out, Seen):
                self.seen.append(out.snapshot)
                out = self.steps.send(None)
        except StopIteration:
            out = None
        self.step = out
        return out


def test_the_stream_is_read_until_the_terminal_snapshot() -> None:
    d = Driver()
    assert d.step == OpenWatch(0.0, None)
    assert d.send(snap()) is READ_NEXT
    assert d.send(snap(finished=1)) is READ_NEXT
    assert d.send(snap(SUCCEEDED, 2)) is None
    assert [s.finished_nodes for s in d.seen] == [0, 1, 2]


def test_the_stream_gets_the_time_left_as_its_deadline() -> None:
    d = Driver(timeout=10)
    assert d.step == OpenWatch(0.0, 10)
    d.send(snap(), elapsed=3)
    d.send(Unavailable("gone"), elapsed=1)
    assert isinstance(d.step, OpenWatch) and d.step.timeout == pytest.approx(6)


def test_a_broken_stream_is_opened_again_after_doubling_pauses_and_repeats_are_not_handed_out() -> None:
    d = Driver()
    d.send(snap())
    pauses = []
    for _ in range(6):
        step = d.send(Unavailable("replica gone"), elapsed=0.1)
        assert isinstance(step, OpenWatch)
        pauses.append(step.delay)
    assert pauses == [FIRST_PAUSE, 2 * FIRST_PAUSE, 4 * FIRST_PAUSE, 8 * FIRST_PAUSE, 16 * FIRST_PAUSE, MAX_PAUSE]
    assert d.send(snap()) is READ_NEXT  # the new stream's first message: the same workflow
    assert len(d.seen) == 1
    d.send(ENDED)  # a stream that ends before the workflow did: its replica stopped
    assert d.step == OpenWatch(FIRST_PAUSE, None)  # the pause starts over after a message came
    d.send(snap(SUCCEEDED, 2))
    assert [s.state for s in d.seen] == [WorkflowState.RUNNING, WorkflowState.SUCCEEDED]


def test_an_outage_longer_than_the_budget_is_raised() -> None:
    d = Driver(outage=5)
    d.send(snap())
    d.send(Unavailable("down"), elapsed=1)
    d.send(Unavailable("down"), elapsed=4.9)
    with pytest.raises(Unavailable, match="down"):
        d.send(Unavailable("down"), elapsed=0.2)
    d = Driver(outage=1)
    d.send(ENDED)
    with pytest.raises(Unavailable, match="kept ending the watch of workflow wf_1"):
        d.send(ENDED, elapsed=1)


def test_errors_that_are_not_transient_are_raised_at_once() -> None:
    d = Driver()
    with pytest.raises(NotFound):
        d.send(NotFound("no workflow wf_1"))


def test_the_deadline_raises_result_timeout_naming_the_last_state() -> None:
    d = Driver(timeout=2)
    d.send(snap(finished=1))
    with pytest.raises(ResultTimeout, match=r"workflow wf_1 did not finish within 2s \(it is RUNNING, 1/2 nodes"):
        d.send(RPCError("deadline", grpc.StatusCode.DEADLINE_EXCEEDED), elapsed=2)


def test_polling_is_only_the_fallback_for_a_server_without_the_stream() -> None:
    d = Driver(timeout=1.2)
    assert d.send(RPCError("no", grpc.StatusCode.UNIMPLEMENTED)) == Poll(0.0)
    assert d.send(snap()) == Poll(POLL_EVERY)
    assert d.send(snap(), elapsed=0.5) == Poll(POLL_EVERY)
    assert len(d.seen) == 1
    step = d.send(snap(finished=1), elapsed=0.5)
    assert isinstance(step, Poll) and step.delay == pytest.approx(0.2)  # no sleeping past the deadline
    with pytest.raises(ResultTimeout):
        d.send(snap(finished=1), elapsed=0.2)
    d = Driver()
    d.send(RPCError("no", grpc.StatusCode.UNIMPLEMENTED))
    with pytest.raises(RPCError, match="no"):  # GetWorkflow not served either: nothing else to try
        d.send(RPCError("no", grpc.StatusCode.UNIMPLEMENTED))


def test_a_terminal_first_snapshot_ends_at_once() -> None:
    d = Driver()
    assert d.send(snap(CANCELLED)) is None
    assert [s.state for s in d.seen] == [WorkflowState.CANCELLED]


# --- snapshots and their outcome -----------------------------------------------------------

def test_a_snapshot_reads_the_message() -> None:
    msg = wf.Workflow(id="wf_2", name="a | b", state=RUNNING, on_failure=wf.FAILURE_POLICY_CONTINUE, run=2,
                      finished_nodes=1, nodes=[
                          wf.NodeState(key="0", task_id="t0", state=task_pb2.TASK_STATE_SUCCEEDED, name="a",
                                       queue="q"),
                          wf.NodeState(key="1", state=task_pb2.TASK_STATE_UNSPECIFIED, name="b", queue="q",
                                       parents=["0"], parent_results=wf.PARENT_RESULTS_VALUE)])
    msg.created_at.FromSeconds(1_700_000_000)
    s = WorkflowSnapshot.of(msg)
    assert (s.id, s.name, s.state, s.on_failure, s.run, s.finished_at) == (
        "wf_2", "a | b", WorkflowState.RUNNING, "continue", 2, None)
    assert s.created_at.timestamp() == 1_700_000_000
    assert s.node("1") == NodeSnapshot("1", "", TaskState.UNSPECIFIED, "b", "q", ("0",), "value")
    assert s.node("0").submitted and not s.node("1").submitted
    assert s.progress() == "1/2 nodes finished"
    with pytest.raises(KeyError):
        s.node("9")
    with pytest.raises(WorkflowError, match="ended RUNNING: not finished"):
        s.outcome()


def test_a_succeeded_snapshot_gives_the_decoded_result() -> None:
    s = snap(SUCCEEDED, 2, result=task_pb2.TaskResult(data=b"[3,[1,2]]", content_type="application/json"))
    assert s.outcome() == [3, [1, 2]]


def test_a_failed_snapshot_raises_workflow_failed_naming_the_node() -> None:
    error = wf.WorkflowError(node="1", task_id="t1", state=task_pb2.TASK_STATE_DEAD,
                             error=task_pb2.TaskError(type="ValueError", message="boom", traceback="tb"))
    with pytest.raises(WorkflowFailed) as raised:
        snap(FAILED, 2, error=error).outcome()
    exc = raised.value
    assert str(exc) == "workflow wf_1 ended FAILED: node 1, task t1 ended DEAD: ValueError: boom"
    assert (exc.workflow_id, exc.node, exc.task_id, exc.node_state, exc.error_type, exc.error_message,
            exc.traceback) == ("wf_1", "1", "t1", "DEAD", "ValueError", "boom", "tb")
    never_ran = wf.WorkflowError(node="2", state=task_pb2.TASK_STATE_FAILED,
                                 error=task_pb2.TaskError(type="ParentResultsTooLarge", message="70 MiB"))
    with pytest.raises(WorkflowFailed, match="node 2 ended FAILED: ParentResultsTooLarge: 70 MiB"):
        snap(FAILED, 2, error=never_ran).outcome()


def test_a_cancelled_snapshot_raises_workflow_cancelled() -> None:
    with pytest.raises(WorkflowCancelled, match="workflow wf_1 ended CANCELLED"):
        snap(CANCELLED).outcome()
    assert WorkflowState.CANCELLED.terminal and not WorkflowState.RUNNING.terminal
