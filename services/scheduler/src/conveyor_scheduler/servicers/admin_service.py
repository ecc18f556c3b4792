"""conveyor.v1.AdminService: inspection and repair (dead letters)."""

from __future__ import annotations

import grpc

from conveyor.v1 import admin_service_pb2
from conveyor_scheduler.core import Core
from conveyor_scheduler.errors import InvalidArgument
from conveyor_scheduler.records import to_task
from conveyor_scheduler.validation import check_queue, check_task_id


class AdminService:
    def __init__(self, core: Core) -> None:
        self.core = core

    async def ListDeadLetters(self, request: admin_service_pb2.ListDeadLettersRequest,
                              context: grpc.aio.ServicerContext) -> admin_service_pb2.ListDeadLettersResponse:
        queue = check_queue(request.queue, "queue")
        limit = request.limit or 100
        if not 1 <= limit <= 1000:
            raise InvalidArgument("limit", f"must be 1 to 1000, got {limit}")
        found, total = await self.core.store.dead_letters(queue, request.offset, limit)
        return admin_service_pb2.ListDeadLettersResponse(
            tasks=[to_task(task_id, queue, rec) for task_id, rec in found if rec], total=total)

    async def RequeueDeadLetters(self, request: admin_service_pb2.RequeueDeadLettersRequest,
                                 context: grpc.aio.ServicerContext) -> admin_service_pb2.RequeueDeadLettersResponse:
        queue, ids = await self._selection(request.queue, request.task_ids, request.all)
        requeued = await self.core.store.requeue_dead(queue, ids)
        if requeued:
            self.core.tasks_ready(queue)
            await self.core.bus.publish_wake(queue)
        return admin_service_pb2.RequeueDeadLettersResponse(requeued=requeued)

    async def PurgeDeadLetters(self, request: admin_service_pb2.PurgeDeadLettersRequest,
                               context: grpc.aio.ServicerContext) -> admin_service_pb2.PurgeDeadLettersResponse:
        queue, ids = await self._selection(request.queue, request.task_ids, request.all)
        return admin_service_pb2.PurgeDeadLettersResponse(purged=await self.core.store.purge_dead(queue, ids))

    async def _selection(self, queue: str, task_ids: list[str], everything: bool) -> tuple[str, list[str]]:
        queue = check_queue(queue, "queue")
        if everything == bool(task_ids):
            raise InvalidArgument("task_ids", "name the dead letters, or set all=true (not both)")
        if len(task_ids) > 10_000:
            raise InvalidArgument("task_ids", "at most 10,000 per call")
        for i, task_id in enumerate(task_ids):
            if await self.core.store.queue_name(check_task_id(task_id, f"task_ids[{i}]")) != queue:
                raise InvalidArgument(f"task_ids[{i}]", f"task {task_id} is not in queue {queue!r}")
        return queue, list(task_ids)
