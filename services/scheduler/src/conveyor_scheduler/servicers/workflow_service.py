"""conveyor.v1.WorkflowService: submit, get, watch, cancel and retry workflows.

Thin: validation, storage and the advance live in workflows.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc

from conveyor.v1 import workflow_pb2
from conveyor.v1 import workflow_service_pb2 as pb
from conveyor_scheduler.errors import InvalidArgument
from conveyor_scheduler.workflows import Workflows, check_workflow_id

WATCH_INTERVAL_S = 0.1
"""A watch sends at most ten snapshots a second (WatchWorkflow's documented rate): each is the
whole workflow, so a 10,000-node chord sent once per finished node would cost O(N²)."""
TERMINAL = frozenset({workflow_pb2.WORKFLOW_STATE_SUCCEEDED, workflow_pb2.WORKFLOW_STATE_FAILED,
                      workflow_pb2.WORKFLOW_STATE_CANCELLED})


class WorkflowService:
    def __init__(self, workflows: Workflows) -> None:
        self.workflows = workflows

    async def SubmitWorkflow(self, request: pb.SubmitWorkflowRequest, context: grpc.aio.ServicerContext
                             ) -> pb.SubmitWorkflowResponse:
        if not request.HasField("workflow"):
            raise InvalidArgument("workflow", "must be set")
        workflow_id = await self.workflows.submit(request.workflow)
        return pb.SubmitWorkflowResponse(workflow=await self.workflows.snapshot(workflow_id))

    async def GetWorkflow(self, request: pb.GetWorkflowRequest, context: grpc.aio.ServicerContext
                          ) -> pb.GetWorkflowResponse:
        return pb.GetWorkflowResponse(workflow=await self.workflows.snapshot(request.workflow_id))

    async def WatchWorkflow(self, request: pb.WatchWorkflowRequest, context: grpc.aio.ServicerContext
                            ) -> AsyncIterator[pb.WatchWorkflowResponse]:
        workflow_id = check_workflow_id(request.workflow_id)
        changed = self.workflows.listen(workflow_id)  # before the first read: no change slips between
        try:
            last = None
            while True:
                changed.clear()
                now = await self.workflows.snapshot(workflow_id)
                if now != last:
                    yield pb.WatchWorkflowResponse(workflow=now)
                    last = now
                if now.state in TERMINAL:
                    return
                await changed.wait()
                await asyncio.sleep(WATCH_INTERVAL_S)  # changes meanwhile go out together, in one snapshot
        finally:
            self.workflows.unlisten(workflow_id, changed)

    async def CancelWorkflow(self, request: pb.CancelWorkflowRequest, context: grpc.aio.ServicerContext
                             ) -> pb.CancelWorkflowResponse:
        await self.workflows.cancel(request.workflow_id)
        return pb.CancelWorkflowResponse(workflow=await self.workflows.snapshot(request.workflow_id))

    async def RetryWorkflow(self, request: pb.RetryWorkflowRequest, context: grpc.aio.ServicerContext
                            ) -> pb.RetryWorkflowResponse:
        await self.workflows.retry(request.workflow_id)
        return pb.RetryWorkflowResponse(workflow=await self.workflows.snapshot(request.workflow_id))
