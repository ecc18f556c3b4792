"""conveyor.v1.TaskService: Submit, Poll, Ack, ExtendLease, GetResult, GetTask, Cancel."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

import grpc

from conveyor.v1 import task_pb2, task_service_pb2
from conveyor_scheduler.completion import Completion
from conveyor_scheduler.config import Limits
from conveyor_scheduler.dispatch import Dispatcher
from conveyor_scheduler.errors import FailedPrecondition, InvalidArgument, NotFound
from conveyor_scheduler.records import TERMINAL, to_result, to_task
from conveyor_scheduler.result_push import ResultPush
from conveyor_scheduler.servicers import pipeline
from conveyor_scheduler.store import Store
from conveyor_scheduler.submission import Submission
from conveyor_scheduler.task_lookup import TaskLookup
from conveyor_scheduler.validation import check_lease_token, check_name, check_queue, check_task_names, duration_ms
from conveyor_scheduler.waiters import ResultWaiters
from conveyor_scheduler.watchers import Watchers

STATE_NAMES = {v.number: v.name.removeprefix("TASK_STATE_") for v in task_pb2.TaskState.DESCRIPTOR.values}
MAX_POLL_TASKS = 1000


class TaskService:
    def __init__(self, *, limits: Limits, submission: Submission, completion: Completion, dispatcher: Dispatcher,
                 lookup: TaskLookup, store: Store, waiters: ResultWaiters, watchers: Watchers,
                 call_span: pipeline.CallSpan = pipeline.no_call_span) -> None:
        self.limits = limits
        self.submission = submission
        """Submit (and the beat's firings)."""
        self.completion = completion
        """Ack (and the worker stream's reports)."""
        self.dispatcher = dispatcher
        """Poll."""
        self.lookup = lookup
        self.store = store
        self.waiters = waiters
        """Submit(wait_results), GetResult(s) and Pipeline's pushed results wait here."""
        self.watchers = watchers
        """WatchTask's state changes."""
        self.call_span = call_span
        """The SERVER span of each call a Pipeline stream carries (telemetry's, when tracing)."""

    async def Submit(self, request: task_service_pb2.SubmitRequest, context: grpc.aio.ServicerContext
                     ) -> task_service_pb2.SubmitResponse:
        return await self.submit(request, context)

    async def submit(self, request: task_service_pb2.SubmitRequest, context: pipeline.Deadline,
                     push: ResultPush | None = None) -> task_service_pb2.SubmitResponse:
        """Submit, and on a Pipeline stream (`push`) the pushed results its specs ask for."""
        count = len(request.tasks)
        if not 1 <= count <= self.limits.max_batch:
            raise InvalidArgument("tasks", f"must hold 1 to {self.limits.max_batch} tasks, got {count}")
        wait_ms = -1
        if request.HasField("wait_results"):
            wait_ms = duration_ms(request.wait_results, "wait_results", minimum=0,
                                  maximum=self.limits.max_result_wait_ms)
        submitted = await self.submission.submit_specs(request.tasks)  # shared with the beat's firings
        resp = task_service_pb2.SubmitResponse(tasks=[
            task_service_pb2.SubmittedTask(id=s.id, queue=s.queue, state=s.state, duplicate=s.duplicate)
            for s in submitted])
        if push is not None and wait_ms < 0:
            for i in push.follow(request.tasks, submitted):
                resp.tasks[i].result_pushed = True
        if wait_ms >= 0:  # submit and wait in one call: woken in-process when our worker acks
            wait_ms = self._capped(wait_ms, context)
            records = await self._wait([(s.queue, s.id) for s in submitted], wait_ms,
                                       [not s.duplicate and s.state not in TERMINAL for s in submitted])
            resp.results.extend(to_result(s.id, rec) for s, rec in zip(submitted, records, strict=True))
        return resp

    def _capped(self, wait_ms: int, context: pipeline.Deadline) -> int:
        """A wait that ends before the caller's deadline, so it gets an answer, not a timeout."""
        if context.time_remaining() is not None:
            wait_ms = min(wait_ms, max(0, int(context.time_remaining() * 1000) - 50))
        return wait_ms

    async def _wait(self, tasks: list[tuple[str, str]], wait_ms: int, unfinished: list[bool] | None = None
                    ) -> list[dict[bytes, bytes]]:
        queues = {task_id: queue for queue, task_id in tasks}

        async def fetch(ids: Sequence[str]) -> list[dict[bytes, bytes]]:
            return await self.store.get_many([(queues[i], i) for i in ids])

        if not wait_ms:
            return await fetch([task_id for _, task_id in tasks])
        return await self.waiters.wait_many([task_id for _, task_id in tasks], wait_ms / 1000, fetch,
                                                 unfinished)

    async def Poll(self, request: task_service_pb2.PollRequest, context: grpc.aio.ServicerContext
                   ) -> task_service_pb2.PollResponse:
        if not 1 <= len(request.queues) <= 32:
            raise InvalidArgument("queues", "name 1 to 32 queues")
        queues = [check_queue(q, f"queues[{i}]") for i, q in enumerate(request.queues)]
        max_tasks = request.max_tasks or 1  # 0 (unset) means the default, as limit/page_size do elsewhere
        if max_tasks > MAX_POLL_TASKS:
            raise InvalidArgument("max_tasks", f"must be 0 to {MAX_POLL_TASKS} (0 means 1), got {max_tasks}")
        wait_ms = 0
        if request.HasField("wait"):
            wait_ms = duration_ms(request.wait, "wait", minimum=0, maximum=self.limits.max_poll_wait_ms)
        worker = check_name(request.worker_id, "worker_id") if request.worker_id else "poll"
        names = check_task_names(request.task_names, "task_names")
        leased = await self.dispatcher.poll(queues, max_tasks, worker, names, wait_ms)
        return task_service_pb2.PollResponse(tasks=leased)

    async def Ack(self, request: task_service_pb2.AckRequest, context: grpc.aio.ServicerContext
                  ) -> task_service_pb2.AckResponse:
        if not 1 <= len(request.acks) <= self.limits.max_batch:
            raise InvalidArgument("acks", f"must hold 1 to {self.limits.max_batch} acks, got {len(request.acks)}")
        outcomes = await self.completion.ack(request.acks, "acks")  # shared with the worker stream
        if len(outcomes) == 1 and outcomes[0].status != task_pb2.ACK_STATUS_ACCEPTED:
            o = outcomes[0]
            if o.status == task_pb2.ACK_STATUS_NOT_FOUND:
                raise NotFound(f"no task {o.task_id}")
            raise FailedPrecondition(
                f"stale lease for task {o.task_id}: the lease token is not the current one "
                f"(the task is {STATE_NAMES[o.state]}); the outcome was not recorded")
        return task_service_pb2.AckResponse(outcomes=outcomes)

    async def ExtendLease(self, request: task_service_pb2.ExtendLeaseRequest, context: grpc.aio.ServicerContext
                          ) -> task_service_pb2.ExtendLeaseResponse:
        extend = duration_ms(request.extend_by, "extend_by", minimum=1, maximum=self.limits.max_timeout_ms)
        check_lease_token(request.lease_token, "lease_token")
        queue = await self.lookup.queue_of(request.task_id)
        (expiry,) = await self.store.extend(queue, [(request.task_id, request.lease_token, extend)])
        if expiry == -2:
            raise NotFound(f"no task {request.task_id}")
        if expiry == -1:
            raise FailedPrecondition(f"stale lease for task {request.task_id}: the lease token is not the current one")
        resp = task_service_pb2.ExtendLeaseResponse()
        resp.lease_expires_at.FromMilliseconds(expiry)
        return resp

    async def GetResult(self, request: task_service_pb2.GetResultRequest, context: grpc.aio.ServicerContext
                        ) -> task_service_pb2.GetResultResponse:
        wait_ms = 0
        if request.HasField("wait"):
            wait_ms = duration_ms(request.wait, "wait", minimum=0, maximum=self.limits.max_result_wait_ms)
        queue = await self.lookup.queue_of(request.task_id)
        (rec,) = await self._wait([(queue, request.task_id)], self._capped(wait_ms, context))
        if not rec:
            raise NotFound(f"no task {request.task_id} (it never existed, or its record expired)")
        return to_result(request.task_id, rec)

    async def GetResults(self, request: task_service_pb2.GetResultsRequest, context: grpc.aio.ServicerContext
                         ) -> task_service_pb2.GetResultsResponse:
        count = len(request.task_ids)
        if not 1 <= count <= self.limits.max_batch:
            raise InvalidArgument("task_ids", f"must hold 1 to {self.limits.max_batch} ids, got {count}")
        wait_ms = 0
        if request.HasField("wait"):
            wait_ms = duration_ms(request.wait, "wait", minimum=0, maximum=self.limits.max_result_wait_ms)
        tasks = []
        for i, task_id in enumerate(request.task_ids):
            try:
                queue = await self.lookup.queue_of(task_id, f"task_ids[{i}]")
            except NotFound:  # a well-formed id of a queue nobody knows: no such task
                queue = ""  # no queue is named "": its keys hold nothing
            tasks.append((queue, task_id))
        records = await self._wait(tasks, self._capped(wait_ms, context))
        # A task that does not exist (any more) is reported with state UNSPECIFIED.
        return task_service_pb2.GetResultsResponse(results=[
            to_result(task_id, rec) if rec else task_service_pb2.GetResultResponse(task_id=task_id)
            for (_, task_id), rec in zip(tasks, records, strict=True)])

    async def GetTask(self, request: task_service_pb2.GetTaskRequest, context: grpc.aio.ServicerContext
                      ) -> task_service_pb2.GetTaskResponse:
        queue, rec = await self.lookup.record(request.task_id)
        return task_service_pb2.GetTaskResponse(task=to_task(request.task_id, queue, rec))

    async def Cancel(self, request: task_service_pb2.CancelRequest, context: grpc.aio.ServicerContext
                     ) -> task_service_pb2.CancelResponse:
        queue = await self.lookup.queue_of(request.task_id)
        state, _ = await self.store.cancel(queue, request.task_id)
        if state == 0:
            raise NotFound(f"no task {request.task_id}")
        if state == task_pb2.TASK_STATE_CANCELLED:
            self.waiters.notify(request.task_id)
        elif state in TERMINAL:
            raise FailedPrecondition(f"task {request.task_id} already finished as {STATE_NAMES[state]}")
        return task_service_pb2.CancelResponse(state=state)

    async def Pipeline(self, requests: AsyncIterator[task_service_pb2.PipelineRequest],
                       context: grpc.aio.ServicerContext) -> None:
        await pipeline.serve(requests, context, self.submit, self.GetResults,
                             lambda send: ResultPush(self.waiters, self.store.get_many, send), self.call_span)

    async def WatchTask(self, request: task_service_pb2.WatchTaskRequest, context: grpc.aio.ServicerContext
                        ) -> AsyncIterator[task_service_pb2.WatchTaskResponse]:
        task_id = request.task_id
        queue = await self.lookup.queue_of(task_id)
        changes = self.watchers.add(task_id)
        try:
            rec = await self.store.watch(queue, task_id)
            if not rec:
                raise NotFound(f"no task {task_id} (it never existed, or its record expired)")
            seq = int(rec.get(b"ev", 0))
            yield self._change(task_id, queue, rec)
            state = int(rec[b"st"])
            while state not in TERMINAL:
                change = await changes.get()
                if change.seq == 0:  # the event bus reconnected: re-read, emit if it moved
                    rec = await self.store.get(queue, task_id)
                    if not rec or int(rec.get(b"ev", 0)) <= seq:
                        continue
                    seq, state = int(rec.get(b"ev", 0)), int(rec[b"st"])
                    yield self._change(task_id, queue, rec)
                    continue
                if change.seq <= seq:
                    continue
                seq, state = change.seq, change.state
                if state in TERMINAL:
                    rec = await self.store.get(queue, task_id)
                    yield self._change(task_id, queue, rec)
                else:
                    yield self._event(task_id, state, change.attempt)
        finally:
            self.watchers.remove(task_id, changes)

    def _event(self, task_id: str, state: int, attempt: int) -> task_service_pb2.WatchTaskResponse:
        resp = task_service_pb2.WatchTaskResponse(task_id=task_id, state=state, attempt=attempt)
        resp.at.FromMilliseconds(self.store.clock())
        return resp

    def _change(self, task_id: str, queue: str, rec: dict[bytes, bytes]) -> task_service_pb2.WatchTaskResponse:
        resp = self._event(task_id, int(rec[b"st"]), int(rec.get(b"at", 0)))
        resp.task.CopyFrom(to_task(task_id, queue, rec))
        return resp
