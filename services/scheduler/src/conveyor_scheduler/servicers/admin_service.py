"""conveyor.v1.AdminService: queue stats and control, task search and bulk actions, dead
letters, the worker registry and worker control. Each call checks its request and hands
over to a domain module (queue_stats, task_search, queue_control, registry, control)."""

from __future__ import annotations

import grpc

from conveyor.v1 import admin_service_pb2, task_pb2
from conveyor_scheduler import control
from conveyor_scheduler.auth_source import AuthSource
from conveyor_scheduler.control import WorkerControl
from conveyor_scheduler.errors import InvalidArgument, NotFound
from conveyor_scheduler.queue_control import QueueControl
from conveyor_scheduler.queue_stats import HISTORY_MINUTES, QueueStatsReader
from conveyor_scheduler.records import to_task
from conveyor_scheduler.registry import Registered, WorkerRegistry
from conveyor_scheduler.store import Store
from conveyor_scheduler.task_search import MAX_PAGE, TaskSearch, decode_cursor, encode_cursor, parse_filter, to_tasks
from conveyor_scheduler.validation import check_name, check_queue, check_task_id
from conveyor_scheduler.wakes import Wakes
from conveyor_scheduler.whoami import who_am_i

MAX_SLOTS = 10_000
"""A worker's concurrency plus prefetch: the cap on one stream's credit."""
CANCELLABLE = frozenset({task_pb2.TASK_STATE_SCHEDULED, task_pb2.TASK_STATE_QUEUED, task_pb2.TASK_STATE_ACTIVE})
RETRYABLE = frozenset({task_pb2.TASK_STATE_FAILED, task_pb2.TASK_STATE_CANCELLED, task_pb2.TASK_STATE_EXPIRED,
                       task_pb2.TASK_STATE_DEAD})


class AdminService:
    def __init__(self, *, store: Store, queue_stats: QueueStatsReader, queue_control: QueueControl,
                 task_search: TaskSearch, registry: WorkerRegistry, worker_control: WorkerControl, wakes: Wakes,
                 auth: AuthSource | None = None) -> None:
        self.store = store
        self.queue_stats = queue_stats
        self.queue_control = queue_control
        self.task_search = task_search
        self.registry = registry
        self.worker_control = worker_control
        """Relays drain, shutdown and concurrency to the replica holding the worker's stream."""
        self.wakes = wakes
        """Told when requeued dead letters are ready."""
        self.auth = auth
        """The auth file's table (None without --auth-file), for WhoAmI."""

    # -- queues ------------------------------------------------------------------------------

    async def ListQueues(self, request: admin_service_pb2.ListQueuesRequest,
                         context: grpc.aio.ServicerContext) -> admin_service_pb2.ListQueuesResponse:
        queues = [await self._known_queue(request.queue, "queue")] if request.queue else await self.store.queues()
        return admin_service_pb2.ListQueuesResponse(queues=await self.queue_stats.list(queues))

    async def GetQueueHistory(self, request: admin_service_pb2.GetQueueHistoryRequest,
                              context: grpc.aio.ServicerContext) -> admin_service_pb2.GetQueueHistoryResponse:
        if request.minutes > HISTORY_MINUTES:
            raise InvalidArgument("minutes", f"must be 1 to {HISTORY_MINUTES} (0: {HISTORY_MINUTES}), "
                                             f"got {request.minutes}")
        queues = [await self._known_queue(request.queue, "queue")] if request.queue else await self.store.queues()
        return await self.queue_stats.history(queues, request.minutes or HISTORY_MINUTES)

    async def PauseQueue(self, request: admin_service_pb2.PauseQueueRequest,
                         context: grpc.aio.ServicerContext) -> admin_service_pb2.PauseQueueResponse:
        queue = await self._known_queue(request.queue, "queue")
        return admin_service_pb2.PauseQueueResponse(was_paused=await self.queue_control.pause(queue))

    async def ResumeQueue(self, request: admin_service_pb2.ResumeQueueRequest,
                          context: grpc.aio.ServicerContext) -> admin_service_pb2.ResumeQueueResponse:
        queue = await self._known_queue(request.queue, "queue")
        return admin_service_pb2.ResumeQueueResponse(was_paused=await self.queue_control.resume(queue))

    async def PurgeQueue(self, request: admin_service_pb2.PurgeQueueRequest,
                         context: grpc.aio.ServicerContext) -> admin_service_pb2.PurgeQueueResponse:
        queue = await self._known_queue(request.queue, "queue")
        return admin_service_pb2.PurgeQueueResponse(purged=await self.queue_control.purge(queue))

    async def _known_queue(self, queue: str, field: str) -> str:
        check_queue(queue, field)
        if queue not in await self.store.queues():
            raise NotFound(f"{field}: no queue {queue!r} (a queue is known from its first task)")
        return queue

    # -- tasks -------------------------------------------------------------------------------

    async def ListTasks(self, request: admin_service_pb2.ListTasksRequest,
                        context: grpc.aio.ServicerContext) -> admin_service_pb2.ListTasksResponse:
        query = parse_filter(request.filter, await self.store.queues())
        if not 1 <= request.page_size <= MAX_PAGE:
            raise InvalidArgument("page_size", f"must be 1 to {MAX_PAGE:,}, got {request.page_size:,}")
        after = decode_cursor(query, request.cursor) if request.cursor else None
        page = await self.task_search.page(query, request.page_size, after,
                                                "all" if request.with_payloads else "rec")
        return admin_service_pb2.ListTasksResponse(
            tasks=to_tasks(page), next_cursor=encode_cursor(query, page.next) if page.next else "")

    async def CancelTasks(self, request: admin_service_pb2.CancelTasksRequest,
                          context: grpc.aio.ServicerContext) -> admin_service_pb2.CancelTasksResponse:
        query = parse_filter(request.filter, await self.store.queues(), allowed_states=CANCELLABLE,
                             states_required=True)
        done = await self.queue_control.cancel(query, request.dry_run)
        return admin_service_pb2.CancelTasksResponse(matched=done.matched, cancelled=done.acted,
                                                     stopping=done.stopping)

    async def RetryTasks(self, request: admin_service_pb2.RetryTasksRequest,
                         context: grpc.aio.ServicerContext) -> admin_service_pb2.RetryTasksResponse:
        query = parse_filter(request.filter, await self.store.queues(), allowed_states=RETRYABLE,
                             states_required=True)
        done = await self.queue_control.retry(query, request.dry_run)
        return admin_service_pb2.RetryTasksResponse(matched=done.matched, retried=done.acted)

    # -- dead letters --------------------------------------------------------------------------

    async def ListDeadLetters(self, request: admin_service_pb2.ListDeadLettersRequest,
                              context: grpc.aio.ServicerContext) -> admin_service_pb2.ListDeadLettersResponse:
        queue = check_queue(request.queue, "queue")
        limit = request.limit or 100
        if not 1 <= limit <= 1000:
            raise InvalidArgument("limit", f"must be 1 to 1000, got {limit}")
        found, total = await self.store.dead_letters(queue, request.offset, limit)
        return admin_service_pb2.ListDeadLettersResponse(
            tasks=[to_task(task_id, queue, rec) for task_id, rec in found if rec], total=total)

    async def RequeueDeadLetters(self, request: admin_service_pb2.RequeueDeadLettersRequest,
                                 context: grpc.aio.ServicerContext) -> admin_service_pb2.RequeueDeadLettersResponse:
        queue, ids = await self._selection(request.queue, request.task_ids, request.all)
        requeued = await self.store.requeue_dead(queue, ids)
        if requeued:
            self.wakes.ready(queue)
            await self.wakes.publish(queue)
        return admin_service_pb2.RequeueDeadLettersResponse(requeued=requeued)

    async def PurgeDeadLetters(self, request: admin_service_pb2.PurgeDeadLettersRequest,
                               context: grpc.aio.ServicerContext) -> admin_service_pb2.PurgeDeadLettersResponse:
        queue, ids = await self._selection(request.queue, request.task_ids, request.all)
        return admin_service_pb2.PurgeDeadLettersResponse(purged=await self.store.purge_dead(queue, ids))

    async def _selection(self, queue: str, task_ids: list[str], everything: bool) -> tuple[str, list[str]]:
        queue = check_queue(queue, "queue")
        if everything == bool(task_ids):
            raise InvalidArgument("task_ids", "name the dead letters, or set all=true (not both)")
        if len(task_ids) > 10_000:
            raise InvalidArgument("task_ids", "at most 10,000 per call")
        for i, task_id in enumerate(task_ids):
            if await self.store.queue_name(check_task_id(task_id, f"task_ids[{i}]")) != queue:
                raise InvalidArgument(f"task_ids[{i}]", f"task {task_id} is not in queue {queue!r}")
        return queue, list(task_ids)

    # -- workers -------------------------------------------------------------------------------

    async def ListWorkers(self, request: admin_service_pb2.ListWorkersRequest,
                          context: grpc.aio.ServicerContext) -> admin_service_pb2.ListWorkersResponse:
        queue = check_queue(request.queue, "queue") if request.queue else ""
        return admin_service_pb2.ListWorkersResponse(workers=await self.registry.list(queue))

    async def GetWorker(self, request: admin_service_pb2.GetWorkerRequest,
                        context: grpc.aio.ServicerContext) -> admin_service_pb2.GetWorkerResponse:
        return admin_service_pb2.GetWorkerResponse(worker=(await self._worker(request.worker_id)).worker)

    async def DrainWorker(self, request: admin_service_pb2.DrainWorkerRequest,
                          context: grpc.aio.ServicerContext) -> admin_service_pb2.DrainWorkerResponse:
        found = await self._control(request.worker_id, control.DRAIN, _reason(request.reason))
        return admin_service_pb2.DrainWorkerResponse(worker=found.worker)

    async def ShutdownWorker(self, request: admin_service_pb2.ShutdownWorkerRequest,
                             context: grpc.aio.ServicerContext) -> admin_service_pb2.ShutdownWorkerResponse:
        found = await self._control(request.worker_id, control.SHUTDOWN, _reason(request.reason))
        return admin_service_pb2.ShutdownWorkerResponse(worker=found.worker)

    async def SetConcurrency(self, request: admin_service_pb2.SetConcurrencyRequest,
                             context: grpc.aio.ServicerContext) -> admin_service_pb2.SetConcurrencyResponse:
        slots = request.concurrency
        if not 1 <= slots <= MAX_SLOTS:
            raise InvalidArgument("concurrency", f"must be 1 to {MAX_SLOTS:,}, got {slots}")
        check_name(request.worker_id, "worker_id")
        found = await self._worker(request.worker_id)
        if slots + found.worker.prefetch > MAX_SLOTS:
            raise InvalidArgument("concurrency", f"plus the worker's prefetch ({found.worker.prefetch}) must be "
                                                 f"at most {MAX_SLOTS:,}, got {slots}")
        await self.worker_control.send(request.worker_id, found.owner, control.CONCURRENCY, slots)
        return admin_service_pb2.SetConcurrencyResponse(worker=found.worker)

    async def WhoAmI(self, request: admin_service_pb2.WhoAmIRequest,
                     context: grpc.aio.ServicerContext) -> admin_service_pb2.WhoAmIResponse:
        return who_am_i(self.auth, context)

    async def _worker(self, worker_id: str) -> Registered:
        found = await self.registry.get(check_name(worker_id, "worker_id"))
        if found is None:
            raise NotFound(f"worker_id: no worker {worker_id!r} is connected (it is not in the worker registry)")
        return found

    async def _control(self, worker_id: str, action: str, arg: str) -> Registered:
        found = await self._worker(worker_id)
        await self.worker_control.send(worker_id, found.owner, action, arg)
        return found


def _reason(reason: str) -> str:
    if len(reason) > 200:
        raise InvalidArgument("reason", f"must be at most 200 characters, got {len(reason)}")
    return reason
