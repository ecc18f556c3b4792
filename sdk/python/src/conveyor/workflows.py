"""Workflows on both clients: the WorkflowService calls, written once (`WorkflowCalls`, and
`workflow_waiting.following` for result() and watch()), sent by a sync or an async transport,
and the handles `Client.submit_workflow` and `Client.workflow(id)` give."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any

import grpc

from conveyor.calls import AsyncCalls, Rpc, SyncCalls
from conveyor.errors import RPCError, amapped_rpc_errors, mapped_rpc_errors
from conveyor.v1 import workflow_service_pb2 as pb
from conveyor.v1 import workflow_service_pb2_grpc as pb_grpc
from conveyor.workflow_graph import Workflow, workflow_spec
from conveyor.workflow_snapshots import WorkflowSnapshot, WorkflowState
from conveyor.workflow_waiting import ENDED, OpenWatch, Poll, Seen, Steps, following

if TYPE_CHECKING:
    from conveyor.aio import AsyncClient, AsyncTaskHandle
    from conveyor.client import Client, TaskHandle


def _snapshot(resp: Any) -> WorkflowSnapshot:
    return WorkflowSnapshot.of(resp.workflow)


class WorkflowCalls:
    """Request builders and result parsers of WorkflowService; no I/O. Every call but submit is
    retried through an outage, as the contract allows (a retried cancel or retry whose first
    try got through answers FailedPrecondition: the workflow is no longer in that state)."""

    @staticmethod
    def submit(workflow: Workflow, on_failure: str | None, name: str | None) -> Rpc[WorkflowSnapshot]:
        req = pb.SubmitWorkflowRequest(workflow=workflow_spec(workflow, on_failure, name))
        return Rpc("SubmitWorkflow", req, _snapshot)  # a new workflow each time: never resent

    @staticmethod
    def get(workflow_id: str) -> Rpc[WorkflowSnapshot]:
        return Rpc("GetWorkflow", pb.GetWorkflowRequest(workflow_id=workflow_id), _snapshot, idempotent=True)

    @staticmethod
    def cancel(workflow_id: str) -> Rpc[WorkflowSnapshot]:
        return Rpc("CancelWorkflow", pb.CancelWorkflowRequest(workflow_id=workflow_id), _snapshot, idempotent=True)

    @staticmethod
    def retry(workflow_id: str) -> Rpc[WorkflowSnapshot]:
        return Rpc("RetryWorkflow", pb.RetryWorkflowRequest(workflow_id=workflow_id), _snapshot, idempotent=True)

    @staticmethod
    def watch(workflow_id: str) -> pb.WatchWorkflowRequest:
        return pb.WatchWorkflowRequest(workflow_id=workflow_id)


class Workflows(SyncCalls):
    """A Client's WorkflowService transport (`client._workflows`); its handles call it."""

    stub_type = pb_grpc.WorkflowServiceStub

    def submit(self, workflow: Workflow, on_failure: str | None, name: str | None) -> WorkflowSnapshot:
        return self._call(WorkflowCalls.submit(workflow, on_failure, name))

    def get(self, workflow_id: str) -> WorkflowSnapshot:
        return self._call(WorkflowCalls.get(workflow_id))

    def cancel(self, workflow_id: str) -> WorkflowSnapshot:
        return self._call(WorkflowCalls.cancel(workflow_id))

    def retry(self, workflow_id: str) -> WorkflowSnapshot:
        return self._call(WorkflowCalls.retry(workflow_id))

    def follow(self, workflow_id: str, timeout: float | None) -> Iterator[WorkflowSnapshot]:
        """Runs `following`'s steps: each new snapshot until the workflow ends."""
        steps: Steps = following(workflow_id, timeout, self._client.timeout, time.monotonic)
        stream: Any = None
        reply: Any = None
        try:
            while True:
                try:
                    step = steps.send(reply)
                except StopIteration:
                    return
                if isinstance(step, Seen):
                    reply = None
                    yield step.snapshot
                    continue
                try:
                    if isinstance(step, OpenWatch | Poll):
                        if stream is not None:
                            stream.cancel()
                            stream = None
                        time.sleep(step.delay)
                    if isinstance(step, Poll):
                        reply = self.get(workflow_id)
                        continue
                    with mapped_rpc_errors():
                        if isinstance(step, OpenWatch):
                            stream = self._stub.WatchWorkflow(WorkflowCalls.watch(workflow_id), timeout=step.timeout)
                        resp = next(stream, None)
                    reply = ENDED if resp is None else _snapshot(resp)
                except RPCError as exc:
                    reply = exc
        finally:
            if stream is not None:
                stream.cancel()


class AsyncWorkflows(AsyncCalls):
    """An AsyncClient's WorkflowService transport: see Workflows."""

    stub_type = pb_grpc.WorkflowServiceStub

    async def submit(self, workflow: Workflow, on_failure: str | None, name: str | None) -> WorkflowSnapshot:
        return await self._call(WorkflowCalls.submit(workflow, on_failure, name))

    async def get(self, workflow_id: str) -> WorkflowSnapshot:
        return await self._call(WorkflowCalls.get(workflow_id))

    async def cancel(self, workflow_id: str) -> WorkflowSnapshot:
        return await self._call(WorkflowCalls.cancel(workflow_id))

    async def retry(self, workflow_id: str) -> WorkflowSnapshot:
        return await self._call(WorkflowCalls.retry(workflow_id))

    async def follow(self, workflow_id: str, timeout: float | None) -> AsyncIterator[WorkflowSnapshot]:
        """See Workflows.follow."""
        steps: Steps = following(workflow_id, timeout, self._client.timeout, asyncio.get_running_loop().time)
        stream: Any = None
        reply: Any = None
        try:
            while True:
                try:
                    step = steps.send(reply)
                except StopIteration:
                    return
                if isinstance(step, Seen):
                    reply = None
                    yield step.snapshot
                    continue
                try:
                    if isinstance(step, OpenWatch | Poll):
                        if stream is not None:
                            stream.cancel()
                            stream = None
                        await asyncio.sleep(step.delay)
                    if isinstance(step, Poll):
                        reply = await self.get(workflow_id)
                        continue
                    async with amapped_rpc_errors():
                        if isinstance(step, OpenWatch):
                            stream = self._stub.WatchWorkflow(WorkflowCalls.watch(workflow_id), timeout=step.timeout)
                        resp = await stream.read()
                    reply = ENDED if resp is grpc.aio.EOF else _snapshot(resp)
                except RPCError as exc:
                    reply = exc
        finally:
            if stream is not None:
                stream.cancel()


class WorkflowHandle:
    """A submitted workflow: its state, result, nodes, cancellation and retry."""

    def __init__(self, client: Client, workflow_id: str, last: WorkflowSnapshot | None = None) -> None:
        self.client = client
        self.id = workflow_id
        self.last = last
        """The last snapshot this handle read (None before its first call)."""

    def __repr__(self) -> str:
        return f"WorkflowHandle({self.id!r})"

    def _seen(self, snapshot: WorkflowSnapshot) -> WorkflowSnapshot:
        self.last = snapshot
        return snapshot

    def get(self) -> WorkflowSnapshot:
        """The workflow now: state, run, every node's task and state, its error or result."""
        return self._seen(self.client._workflows.get(self.id))

    def state(self) -> WorkflowState:
        return self.get().state

    def result(self, timeout: float | None = None) -> Any:
        """Waits for the workflow (on its WatchWorkflow stream) and returns its result: the one
        leaf's, or the list of the leaves' in node order. Raises WorkflowFailed (naming the node),
        WorkflowCancelled or ResultTimeout."""
        last: WorkflowSnapshot | None = None
        for snapshot in self.watch(timeout):
            last = snapshot
        assert last is not None  # following() ends only after handing out the terminal snapshot
        return last.outcome()

    def watch(self, timeout: float | None = None) -> Iterator[WorkflowSnapshot]:
        """Yields the workflow now, then again each time a node finishes or its state changes,
        until it ends; raises ResultTimeout if it has not ended within `timeout` seconds."""
        for snapshot in self.client._workflows.follow(self.id, timeout):
            yield self._seen(snapshot)

    def cancel(self) -> WorkflowSnapshot:
        """Ends it CANCELLED: nodes not submitted never will be, running ones are cancelled.
        FailedPrecondition if it already ended."""
        return self._seen(self.client._workflows.cancel(self.id))

    def retry(self) -> WorkflowSnapshot:
        """Runs a FAILED or CANCELLED workflow again: the nodes that did not succeed run again
        (succeeded ones keep their results). FailedPrecondition if it is RUNNING or SUCCEEDED."""
        return self._seen(self.client._workflows.retry(self.id))

    def nodes(self) -> dict[str, TaskHandle[Any]]:
        """A TaskHandle for each node submitted so far, by node key, in node order."""
        return {n.key: self.client.handle(n.task_id) for n in self.get().nodes if n.task_id}


class AsyncWorkflowHandle:
    """A submitted workflow, on an AsyncClient: WorkflowHandle's surface, awaitable."""

    def __init__(self, client: AsyncClient, workflow_id: str, last: WorkflowSnapshot | None = None) -> None:
        self.client = client
        self.id = workflow_id
        self.last = last
        """See WorkflowHandle.last."""

    def __repr__(self) -> str:
        return f"AsyncWorkflowHandle({self.id!r})"

    def _seen(self, snapshot: WorkflowSnapshot) -> WorkflowSnapshot:
        self.last = snapshot
        return snapshot

    async def get(self) -> WorkflowSnapshot:
        return self._seen(await self.client._workflows.get(self.id))

    async def state(self) -> WorkflowState:
        return (await self.get()).state

    async def result(self, timeout: float | None = None) -> Any:
        """See WorkflowHandle.result."""
        last: WorkflowSnapshot | None = None
        async for snapshot in self.watch(timeout):
            last = snapshot
        assert last is not None  # see WorkflowHandle.result
        return last.outcome()

    async def watch(self, timeout: float | None = None) -> AsyncIterator[WorkflowSnapshot]:
        """See WorkflowHandle.watch."""
        async for snapshot in self.client._workflows.follow(self.id, timeout):
            yield self._seen(snapshot)

    async def cancel(self) -> WorkflowSnapshot:
        return self._seen(await self.client._workflows.cancel(self.id))

    async def retry(self) -> WorkflowSnapshot:
        return self._seen(await self.client._workflows.retry(self.id))

    async def nodes(self) -> dict[str, AsyncTaskHandle[Any]]:
        """See WorkflowHandle.nodes."""
        return {n.key: self.client.handle(n.task_id) for n in (await self.get()).nodes if n.task_id}
