"""Workflow handles of both clients against a stand-in WorkflowService (in this process, no Redis).

The stand-in keeps workflows in memory and lets the test move them along, so what is checked
here is the SDK's side of the contract: the spec it sends, how result() and watch() follow the
WatchWorkflow stream (through a broken stream, and by polling only when the stream is not
served), how errors map, and what cancel, retry and nodes() do. tests/e2e/test_workflows.py
runs the real scheduler and workers.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from concurrent import futures
from typing import Any

import grpc
import pytest
from click.testing import CliRunner

from conveyor import (
    App,
    AsyncClient,
    AsyncTaskHandle,
    Client,
    FailedPrecondition,
    NotFound,
    ResultTimeout,
    TaskHandle,
    WorkflowCancelled,
    WorkflowFailed,
    WorkflowHandle,
    WorkflowState,
    chord,
    group,
    signature,
)
from conveyor.cli import main
from conveyor.v1 import task_pb2
from conveyor.v1 import workflow_pb2 as wf
from conveyor.v1 import workflow_service_pb2 as pb
from conveyor.v1 import workflow_service_pb2_grpc as pb_grpc
from conveyor.workflow_graph import compile_workflow

app = App("wfclient")


@app.task(name="w.add")
def add(x: int, y: int = 0) -> int:
    return x + y


@app.task(name="w.total")
def total(values: list[int]) -> int:
    return sum(values)


class StandIn(pb_grpc.WorkflowServiceServicer):
    """WorkflowService in memory: submit stores the spec (roots get task ids), the test ends it."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.workflows: dict[str, wf.Workflow] = {}
        self.specs: list[wf.WorkflowSpec] = []
        self.watch_served = True
        self.breaks = 0
        """Watches to break (UNAVAILABLE) right after their first message."""
        self.watches = self.gets = 0

    def _answer(self, workflow_id: str, ctx: grpc.ServicerContext) -> wf.Workflow:
        if workflow_id not in self.workflows:
            ctx.abort(grpc.StatusCode.NOT_FOUND, f"no workflow {workflow_id}")
        out = wf.Workflow()
        out.CopyFrom(self.workflows[workflow_id])
        return out

    def SubmitWorkflow(self, request: pb.SubmitWorkflowRequest, context: grpc.ServicerContext
                       ) -> pb.SubmitWorkflowResponse:
        with self.cond:
            self.specs.append(request.workflow)
            wid = f"wf_{len(self.specs)}"
            nodes = [wf.NodeState(key=n.key, name=n.task.name, queue=n.task.queue or "default", parents=n.parents,
                                  parent_results=n.parent_results, task_id="" if n.parents else f"t-{wid}-{n.key}",
                                  state=task_pb2.TASK_STATE_UNSPECIFIED if n.parents else task_pb2.TASK_STATE_QUEUED)
                     for n in request.workflow.nodes]
            self.workflows[wid] = wf.Workflow(id=wid, name=request.workflow.name, state=wf.WORKFLOW_STATE_RUNNING,
                                              on_failure=request.workflow.on_failure, run=1, nodes=nodes)
            return pb.SubmitWorkflowResponse(workflow=self._answer(wid, context))

    def GetWorkflow(self, request: pb.GetWorkflowRequest, context: grpc.ServicerContext) -> pb.GetWorkflowResponse:
        with self.cond:
            self.gets += 1
            return pb.GetWorkflowResponse(workflow=self._answer(request.workflow_id, context))

    def WatchWorkflow(self, request: pb.WatchWorkflowRequest, context: grpc.ServicerContext
                      ) -> Iterator[pb.WatchWorkflowResponse]:
        with self.cond:
            if not self.watch_served:
                context.abort(grpc.StatusCode.UNIMPLEMENTED, "WatchWorkflow is not served here")
            self.watches += 1
            current = self._answer(request.workflow_id, context)
            broken = self.breaks > 0
            self.breaks -= broken
        yield pb.WatchWorkflowResponse(workflow=current)
        if broken:
            context.abort(grpc.StatusCode.UNAVAILABLE, "the replica went away")
        while current.state == wf.WORKFLOW_STATE_RUNNING and context.is_active():
            with self.cond:
                self.cond.wait(0.05)
                now = self._answer(request.workflow_id, context)
            if now != current:
                current = now
                yield pb.WatchWorkflowResponse(workflow=current)

    def CancelWorkflow(self, request: pb.CancelWorkflowRequest, context: grpc.ServicerContext
                       ) -> pb.CancelWorkflowResponse:
        with self.cond:
            w = self.workflows.get(request.workflow_id)
            if w is not None and w.state != wf.WORKFLOW_STATE_RUNNING:
                context.abort(grpc.StatusCode.FAILED_PRECONDITION, "the workflow has already ended")
            self.update(request.workflow_id, state=wf.WORKFLOW_STATE_CANCELLED)
            return pb.CancelWorkflowResponse(workflow=self._answer(request.workflow_id, context))

    def RetryWorkflow(self, request: pb.RetryWorkflowRequest, context: grpc.ServicerContext
                      ) -> pb.RetryWorkflowResponse:
        with self.cond:
            w = self._answer(request.workflow_id, context)
            if w.state in (wf.WORKFLOW_STATE_RUNNING, wf.WORKFLOW_STATE_SUCCEEDED):
                context.abort(grpc.StatusCode.FAILED_PRECONDITION, "only a FAILED or CANCELLED workflow is retried")
            self.workflows[w.id].ClearField("error")
            self.update(w.id, state=wf.WORKFLOW_STATE_RUNNING, run=w.run + 1)
            return pb.RetryWorkflowResponse(workflow=self._answer(w.id, context))

    def update(self, workflow_id: str, **fields: Any) -> None:
        """Changes a workflow (as a node finishing would) and wakes its watchers."""
        with self.cond:
            w = self.workflows[workflow_id]
            for name, value in fields.items():
                if isinstance(value, wf.WorkflowError | task_pb2.TaskResult):
                    getattr(w, name).CopyFrom(value)
                else:
                    setattr(w, name, value)
            self.cond.notify_all()

    def succeed(self, workflow_id: str, result: bytes) -> None:
        self.update(workflow_id, state=wf.WORKFLOW_STATE_SUCCEEDED,
                    finished_nodes=len(self.workflows[workflow_id].nodes),
                    result=task_pb2.TaskResult(data=result, content_type="application/json"))


@pytest.fixture
def stand_in() -> Iterator[tuple[StandIn, str]]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
    service = StandIn()
    pb_grpc.add_WorkflowServiceServicer_to_server(service, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield service, f"127.0.0.1:{port}"
    server.stop(None)


def later(seconds: float, fn: Any, *args: Any, **kwargs: Any) -> threading.Timer:
    timer = threading.Timer(seconds, fn, args, kwargs)
    timer.start()
    return timer


def test_submit_sends_the_compiled_canvas_and_result_waits_on_the_stream(stand_in: tuple[StandIn, str]) -> None:
    service, target = stand_in
    canvas = group(add.s(i, i) for i in range(3)) | total.s()
    with Client(target) as client:
        handle = client.submit_workflow(canvas, name="sums")
        assert isinstance(handle, WorkflowHandle) and handle.id == "wf_1"
        assert service.specs == [compile_workflow(canvas, name="sums")]
        assert handle.last is not None and [n.task_id for n in handle.last.nodes] == ["t-wf_1-0", "t-wf_1-1",
                                                                                       "t-wf_1-2", ""]
        later(0.3, service.succeed, "wf_1", b"6")
        started = time.monotonic()
        assert handle.result(timeout=10) == 6
        assert time.monotonic() - started < 5
        assert (service.watches, service.gets) == (1, 0)  # one stream, no polling
        assert handle.state() is WorkflowState.SUCCEEDED


def test_canvas_submit_uses_the_apps_client_and_on_failure(stand_in: tuple[StandIn, str]) -> None:
    service, target = stand_in
    mine = App("mine", scheduler=target)
    double = mine.task(name="w.double")(lambda x: 2 * x)
    handle = (double.s(1) | double.s()).submit(on_failure="continue")
    assert handle.client is mine.client
    assert service.specs[0].on_failure == wf.FAILURE_POLICY_CONTINUE
    assert service.specs[0].name == "w.double | w.double"
    with pytest.raises(ValueError, match="no app to submit with"):
        (signature("w.add", [1]) | signature("w.total")).submit()  # by name: no app to take a client from
    mine.client.close()


def test_watch_rides_through_a_broken_stream_without_repeating_a_snapshot(stand_in: tuple[StandIn, str]) -> None:
    service, target = stand_in
    service.breaks = 2
    with Client(target) as client:
        handle = client.submit_workflow(add.s(1) | add.s(2))
        later(0.5, service.update, "wf_1", finished_nodes=1)
        later(0.8, service.succeed, "wf_1", b"3")
        seen = [(s.state, s.finished_nodes) for s in handle.watch(timeout=10)]
    assert seen == [(WorkflowState.RUNNING, 0), (WorkflowState.RUNNING, 1), (WorkflowState.SUCCEEDED, 2)]
    assert service.watches == 3


def test_a_failed_workflow_raises_workflow_failed_naming_the_node(stand_in: tuple[StandIn, str]) -> None:
    service, target = stand_in
    with Client(target) as client:
        handle = client.submit_workflow(add.s(1) | add.s(2))
        error = wf.WorkflowError(node="1", task_id="t-1", state=task_pb2.TASK_STATE_FAILED,
                                 error=task_pb2.TaskError(type="TypeError", message="bad operand"))
        later(0.2, service.update, "wf_1", state=wf.WORKFLOW_STATE_FAILED, error=error)
        with pytest.raises(WorkflowFailed, match="node 1, task t-1 ended FAILED: TypeError: bad operand") as failed:
            handle.result(timeout=10)
        assert failed.value.node == "1" and failed.value.workflow_id == "wf_1"
        assert handle.last is not None and handle.last.error is not None and handle.last.error.node == "1"
        again = handle.retry()
        assert (again.state, again.run, again.error) == (WorkflowState.RUNNING, 2, None)


def test_cancel_then_result_raises_cancelled_and_a_second_cancel_is_refused(stand_in: tuple[StandIn, str]) -> None:
    service, target = stand_in
    with Client(target) as client:
        handle = client.submit_workflow(add.s(1) | add.s(2))
        assert handle.cancel().state is WorkflowState.CANCELLED
        with pytest.raises(WorkflowCancelled):
            handle.result(timeout=5)
        with pytest.raises(FailedPrecondition, match="already ended"):
            handle.cancel()
        service.succeed("wf_1", b"3")
        with pytest.raises(FailedPrecondition):
            handle.retry()


def test_nodes_are_task_handles_by_key_for_the_submitted_ones(stand_in: tuple[StandIn, str]) -> None:
    _, target = stand_in
    with Client(target) as client:
        nodes = client.submit_workflow(chain_of_two()).nodes()
        assert list(nodes) == ["0"] and isinstance(nodes["0"], TaskHandle) and nodes["0"].id == "t-wf_1-0"


def chain_of_two() -> Any:
    return add.s(1) | add.s(2)


def test_an_unknown_workflow_is_not_found_and_a_timeout_is_a_result_timeout(stand_in: tuple[StandIn, str]) -> None:
    _, target = stand_in
    with Client(target) as client:
        missing = client.workflow("wf_nope")
        with pytest.raises(NotFound, match="no workflow wf_nope"):
            missing.get()
        with pytest.raises(NotFound):
            missing.result(timeout=5)
        handle = client.submit_workflow(chain_of_two())
        started = time.monotonic()
        with pytest.raises(ResultTimeout, match=r"did not finish within 0.5s \(it is RUNNING, 0/2 nodes finished\)"):
            handle.result(timeout=0.5)
        assert time.monotonic() - started < 3


def test_without_the_stream_the_workflow_is_polled(stand_in: tuple[StandIn, str]) -> None:
    service, target = stand_in
    service.watch_served = False
    with Client(target) as client:
        handle = client.submit_workflow(chain_of_two())
        later(0.6, service.succeed, "wf_1", b"3")
        assert handle.result(timeout=10) == 3
    assert service.gets >= 2


def test_the_async_handle(stand_in: tuple[StandIn, str]) -> None:
    service, target = stand_in

    async def main() -> None:
        async with AsyncClient(target) as client:
            handle = await (add.s(1) | add.s(2)).asubmit(client=client)
            assert handle.id == "wf_1" and (await handle.state()) is WorkflowState.RUNNING
            nodes = await handle.nodes()
            assert isinstance(nodes["0"], AsyncTaskHandle) and nodes["0"].id == "t-wf_1-0"
            service.breaks = 1
            later(0.3, service.update, "wf_1", finished_nodes=1)
            later(0.6, service.succeed, "wf_1", b"3")
            seen = [s.finished_nodes async for s in handle.watch(timeout=10)]
            assert seen == [0, 1, 2]
            assert await handle.result(timeout=5) == 3
            other = await client.submit_workflow(chain_of_two())
            with pytest.raises(ResultTimeout):
                await other.result(timeout=0.3)
            assert (await other.cancel()).state is WorkflowState.CANCELLED
            with pytest.raises(WorkflowCancelled):
                await other.result()
            assert (await other.retry()).run == 2
            with pytest.raises(NotFound):
                await client.workflow("wf_nope").result(timeout=5)

    asyncio.run(main())


def test_the_cli_shows_and_watches_a_workflow(stand_in: tuple[StandIn, str]) -> None:
    service, target = stand_in
    with Client(target) as client:
        client.submit_workflow(chord([add.s(1), add.s(2)], total.s()))
        client.submit_workflow(add.s(1) | add.s(2))
    runner = CliRunner()
    shown = runner.invoke(main, ["-s", target, "workflow", "wf_1"])
    assert shown.exit_code == 0, shown.output
    assert "chord(group(w.add, w.add), w.total)" in shown.output
    assert "├── 0" in shown.output and "0, 1 (list)" in shown.output and "t-wf_1-0" in shown.output
    record = json.loads(runner.invoke(main, ["-s", target, "workflow", "wf_1", "--json"]).output)
    assert record["id"] == "wf_1" and [n["key"] for n in record["nodes"]] == ["0", "1", "2"]
    later(0.3, service.update, "wf_1", finished_nodes=2)
    later(0.6, service.succeed, "wf_1", b"3")
    watched = runner.invoke(main, ["-s", target, "workflow", "wf_1", "--watch", "--json"])
    lines = [json.loads(line) for line in watched.output.splitlines()]
    assert watched.exit_code == 0 and [line.get("finished_nodes", 0) for line in lines] == [0, 2, 3]
    assert lines[-1]["result"]["value"] == 3
    later(0.3, service.update, "wf_2", state=wf.WORKFLOW_STATE_FAILED, error=wf.WorkflowError(
        node="1", task_id="t", state=task_pb2.TASK_STATE_FAILED, error=task_pb2.TaskError(type="E", message="m")))
    failed = runner.invoke(main, ["-s", target, "workflow", "wf_2", "--watch"])
    assert failed.exit_code == 1 and "node 1 (task t) ended FAILED: E: m" in failed.output
    missing = runner.invoke(main, ["-s", target, "workflow", "wf_nope"])
    assert isinstance(missing.exception, NotFound)  # `conveyor` (cli.run) prints it and exits 1
