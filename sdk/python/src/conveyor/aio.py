"""The asyncio client and its task handle (same surface as the sync ones, awaitable)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Sequence
from typing import Any, Generic, TypeVar

import grpc

from conveyor.admin import AsyncAdmin
from conveyor.calls import renamed
from conveyor.canvas import OnFailure
from conveyor.channels import TLSConfig, open_aio_channel
from conveyor.common import (
    DEFAULT_TARGET,
    MAX_IDS,
    MAX_WAIT_CHUNK,
    Call,
    TaskEvent,
    TaskState,
    duration,
    outcome,
    submit_request,
)
from conveyor.errors import DeadlineExceeded, ResultTimeout, mapped_rpc_errors
from conveyor.errors import amapped_rpc_errors as _rpc
from conveyor.options import SubmitOptions
from conveyor.pipeline import AsyncPipeline, PipelineCallError
from conveyor.pushed import AwaitPush, in_order, waiting
from conveyor.resilience import acall_with_retry
from conveyor.schedules import AsyncSchedules
from conveyor.telemetry import producer_spans, tracer
from conveyor.v1 import task_pb2, task_service_pb2, task_service_pb2_grpc
from conveyor.workflow_graph import Workflow
from conveyor.workflows import AsyncWorkflowHandle, AsyncWorkflows

R = TypeVar("R")


class AsyncClient:
    """Talks to a scheduler from asyncio code: Client's surface, awaitable."""

    admin: AsyncAdmin
    """Queues, task search and bulk actions, dead letters, the worker registry and worker control
    (AdminService)."""
    schedules: AsyncSchedules
    """Periodic schedules (ScheduleService)."""

    def __init__(self, target: str = DEFAULT_TARGET, *, channel: grpc.aio.Channel | None = None,
                 tls: TLSConfig | None = None, token: str | None = None, timeout: float = 30.0,
                 pipeline: bool = True) -> None:
        """See Client."""
        if channel is not None and (tls is not None or token is not None):
            raise ValueError("tls and token configure the channel AsyncClient opens: not given with channel=")
        self._channel = channel or open_aio_channel(target, tls=tls, token=token)
        self._stub = task_service_pb2_grpc.TaskServiceStub(self._channel)
        self._pipeline = AsyncPipeline(self._channel) if pipeline else None
        """See Client._pipeline."""
        self.admin = AsyncAdmin(self._channel, self)
        self.schedules = AsyncSchedules(self._channel, self)
        self._workflows = AsyncWorkflows(self._channel, self)
        """WorkflowService, for the workflow handles."""
        self._sends: set[asyncio.Future[task_service_pb2.SubmitResponse]] = set()
        """See Client._sends."""
        self.timeout = timeout

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """See Client.close."""
        if self._pipeline is not None:
            if self._sends:
                await asyncio.wait(list(self._sends), timeout=self.timeout)
            await self._pipeline.close()
        await self._channel.close()

    async def submit(self, name: str, args: Sequence[Any] = (), kwargs: dict[str, Any] | None = None,
                     **options: Any) -> AsyncTaskHandle[Any]:
        return (await self.submit_many([Call(name, args, kwargs or {}, SubmitOptions(**options))]))[0]

    async def submit_many(self, calls: Sequence[Call | task_pb2.TaskSpec]) -> list[AsyncTaskHandle[Any]]:
        request = submit_request(calls)
        with producer_spans(request) as spans:  # no-op unless an OpenTelemetry SDK is installed
            async with _rpc():
                resp = await self._submit(request, spans.metadata)
            spans.sent(resp)
        return [AsyncTaskHandle(self, t.id, t.queue) for t in resp.tasks]

    async def send(self, name: str, args: Sequence[Any] = (), kwargs: dict[str, Any] | None = None,
                   **options: Any) -> AsyncTaskHandle[Any]:
        """Submits one task without waiting for the scheduler's answer (see Client.send): returns
        once the submit is queued on the stream. `await handle.sent()` (or any of the handle's
        calls) waits for the answer; `flush()` waits for every send."""
        return await self.send_call(Call(name, args, kwargs or {}, SubmitOptions(**options)))

    async def send_call(self, call: Call | task_pb2.TaskSpec) -> AsyncTaskHandle[Any]:
        """`send` of a prepared Call or TaskSpec."""
        if self._pipeline is None or tracer() is not None:
            return (await self.submit_many([call]))[0]
        future = await self._pipeline.send(submit_request([call]))
        self._sends.add(future)
        future.add_done_callback(self._answered)
        return AsyncTaskHandle(self, pending=future)

    def _answered(self, future: asyncio.Future[task_service_pb2.SubmitResponse]) -> None:
        if future.cancelled() or future.exception() is None:  # a refusal stays until flush() reports it
            self._sends.discard(future)

    async def flush(self, timeout: float | None = None) -> None:
        """See Client.flush."""
        futures = list(self._sends)
        if futures:
            _, late = await asyncio.wait(futures, timeout=timeout)
            if late:
                raise ResultTimeout(f"{len(late)} sends were not answered within {timeout}s")
        first: BaseException | None = None
        for future in futures:
            self._sends.discard(future)
            first = first or future.exception()
        if first is not None:
            async with _rpc():
                raise first

    async def _submit(self, request: task_service_pb2.SubmitRequest, metadata: Any, wait: float = 0.0
                      ) -> task_service_pb2.SubmitResponse:
        """See Client._submit."""
        if self._pipeline is not None and metadata is None:
            send = self._pipeline.submit
        else:
            def send(request: task_service_pb2.SubmitRequest, timeout: float
                     ) -> Awaitable[task_service_pb2.SubmitResponse]:
                return self._stub.Submit(request, timeout=timeout, metadata=metadata)
        if all(spec.idempotency_key for spec in request.tasks):  # safe to retry
            return await acall_with_retry(lambda left: send(request, wait + left), self.timeout)
        return await send(request, wait + self.timeout)

    async def _get_results(self, request: task_service_pb2.GetResultsRequest, timeout: float
                           ) -> task_service_pb2.GetResultsResponse:
        if self._pipeline is not None:
            return await self._pipeline.get_results(request, timeout)
        return await self._stub.GetResults(request, timeout=timeout)

    async def run(self, name: str, args: Sequence[Any] = (), kwargs: dict[str, Any] | None = None, *,
                  timeout: float | None = None, **options: Any) -> Any:
        """Submits one task and waits for its value in the same call (see Client.run)."""
        request = submit_request([Call(name, args, kwargs or {}, SubmitOptions(**options))])
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        request.wait_results.CopyFrom(duration(MAX_WAIT_CHUNK if timeout is None else min(timeout, MAX_WAIT_CHUNK)))
        with producer_spans(request) as spans:
            async with _rpc():
                resp = await self._submit(request, spans.metadata, request.wait_results.ToMilliseconds() / 1000)
            spans.sent(resp)
        if TaskState(resp.results[0].state).terminal:
            return outcome(resp.results[0])
        left = None if deadline is None else max(deadline - loop.time(), 0.001)
        return outcome(await self.wait(resp.tasks[0].id, left))

    async def results(self, tasks: Sequence[AsyncTaskHandle[Any] | str], timeout: float | None = None) -> list[Any]:
        """The values of many tasks, in order (see Client.results)."""
        return [outcome(r) for r in await self.wait_many(tasks, timeout)]

    async def wait_many(self, tasks: Sequence[AsyncTaskHandle[Any] | str], timeout: float | None = None
                        ) -> list[task_service_pb2.GetResultResponse]:
        """Waits until every task is terminal (or raises ResultTimeout); see Client.wait_many."""
        ids = [t if isinstance(t, str) else await t.sent() for t in tasks]
        pushed = self._pipeline.pushed.results(ids) if self._pipeline is not None else {}
        unread = [i for i in ids if i not in pushed]
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        out: list[task_service_pb2.GetResultResponse] = []
        for first in range(0, len(unread), MAX_IDS):
            chunk = unread[first:first + MAX_IDS]
            while True:
                remaining = MAX_WAIT_CHUNK if deadline is None else min(MAX_WAIT_CHUNK, deadline - loop.time())
                req = task_service_pb2.GetResultsRequest(task_ids=chunk, wait=duration(max(remaining, 0.001)))
                async with _rpc():
                    resp = await acall_with_retry(lambda left, req=req: self._get_results(
                        req, req.wait.ToMilliseconds() / 1000 + left), self.timeout)
                if all(TaskState(r.state).terminal or r.state == 0 for r in resp.results):
                    out += resp.results
                    break
                if deadline is not None and loop.time() >= deadline:
                    raise ResultTimeout(f"{sum(not TaskState(r.state).terminal for r in resp.results)} of "
                                        f"{len(ids)} tasks did not finish within {timeout}s")
        return in_order(ids, pushed, out)

    async def get_result(self, task_id: str, wait: float | None = None) -> task_service_pb2.GetResultResponse:
        if self._pipeline is not None:  # GetResults of one id, on the stream
            many = task_service_pb2.GetResultsRequest(task_ids=[task_id])
            if wait:
                many.wait.CopyFrom(duration(wait))
            async with _rpc():
                resp = (await acall_with_retry(lambda left: self._pipeline.get_results(  # type: ignore[union-attr]
                    many, (wait or 0) + left), self.timeout)).results[0]
                if resp.state == 0:  # what GetResult answers with NOT_FOUND
                    raise PipelineCallError(grpc.StatusCode.NOT_FOUND,
                                            f"no task {task_id} (it never existed, or its record expired)")
            return resp
        req = task_service_pb2.GetResultRequest(task_id=task_id)
        if wait:
            req.wait.CopyFrom(duration(wait))
        async with _rpc():
            return await acall_with_retry(lambda left: self._stub.GetResult(req, timeout=(wait or 0) + left),
                                          self.timeout)

    async def get_task(self, task_id: str) -> task_pb2.Task:
        req = task_service_pb2.GetTaskRequest(task_id=task_id)
        async with _rpc():
            resp = await acall_with_retry(lambda left: self._stub.GetTask(req, timeout=left), self.timeout)
        return resp.task

    async def cancel(self, task_id: str) -> TaskState:
        req = task_service_pb2.CancelRequest(task_id=task_id)
        async with _rpc():
            resp = await acall_with_retry(lambda left: self._stub.Cancel(req, timeout=left), self.timeout)
        return TaskState(resp.state)

    async def watch(self, task_id: str, timeout: float | None = None) -> AsyncIterator[TaskEvent]:
        """Yields the task's state changes, from its current state until it finishes."""
        async with _rpc():
            call = self._stub.WatchTask(task_service_pb2.WatchTaskRequest(task_id=task_id), timeout=timeout)
            async for resp in call:
                yield TaskEvent.of(resp)

    def handle(self, task_id: str) -> AsyncTaskHandle[Any]:
        return AsyncTaskHandle(self, task_id)

    async def wait(self, task_id: str, timeout: float | None = None) -> task_service_pb2.GetResultResponse:
        """See Client.wait."""
        steps = waiting(task_id, timeout, self._pipeline.pushed.slot(task_id) if self._pipeline else None,
                        asyncio.get_running_loop().time)
        reply: Any = None
        while True:
            try:
                step = steps.send(reply)
            except StopIteration as done:
                return done.value  # type: ignore[no-any-return]
            if isinstance(step, AwaitPush):
                try:
                    reply = (await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(step.slot)), step.timeout),
                             True)
                except TimeoutError:
                    reply = (None, False)
            else:
                reply = await self.get_result(task_id, wait=step.wait)

    async def submit_workflow(self, workflow: Workflow, *, on_failure: OnFailure | None = None,
                              name: str | None = None) -> AsyncWorkflowHandle:
        """See Client.submit_workflow."""
        submitted = await self._workflows.submit(workflow, on_failure, name)
        return AsyncWorkflowHandle(self, submitted.id, submitted)

    def workflow(self, workflow_id: str) -> AsyncWorkflowHandle:
        """A handle for a workflow submitted elsewhere (no call is made)."""
        return AsyncWorkflowHandle(self, workflow_id)

    # Deprecated names from before the sub-clients (issue 14): they warn and delegate.
    dead_letters = renamed("admin", AsyncAdmin.list_dead_letters)
    requeue_dead = renamed("admin", AsyncAdmin.requeue_dead_letters)
    purge_dead = renamed("admin", AsyncAdmin.purge_dead_letters)
    create_schedule = renamed("schedules", AsyncSchedules.create)
    update_schedule = renamed("schedules", AsyncSchedules.update)
    apply_schedule = renamed("schedules", AsyncSchedules.apply)
    delete_schedule = renamed("schedules", AsyncSchedules.delete)
    pause_schedule = renamed("schedules", AsyncSchedules.pause)
    resume_schedule = renamed("schedules", AsyncSchedules.resume)
    get_schedule = renamed("schedules", AsyncSchedules.get)
    list_schedules = renamed("schedules", AsyncSchedules.list)
    beat_leader = renamed("schedules", AsyncSchedules.beat_leader)


class AsyncTaskHandle(Generic[R]):
    def __init__(self, client: AsyncClient, task_id: str = "", queue: str = "", *,
                 pending: asyncio.Future[task_service_pb2.SubmitResponse] | None = None) -> None:
        self.client = client
        self._id = task_id
        self._queue = queue
        self._pending = pending
        """A `send` not yet answered: every call awaits it; `id` and `queue` need it answered."""
        if client._pipeline is not None:
            client._pipeline.pushed.keep_for(self, pending or task_id)

    def __repr__(self) -> str:
        if self._pending is not None and not self._pending.done():
            return "AsyncTaskHandle(<sent, not answered yet>)"
        return f"AsyncTaskHandle({self.id!r}, queue={self.queue!r})"

    @property
    def id(self) -> str:
        self._answered()
        return self._id

    @property
    def queue(self) -> str:
        self._answered()
        return self._queue

    def _answered(self) -> None:
        if self._pending is None:
            return
        if not self._pending.done():
            raise RuntimeError("this send is not answered yet: await handle.sent() or client.flush() first")
        with mapped_rpc_errors():
            task = self._pending.result().tasks[0]
        self._id, self._queue, self._pending = task.id, task.queue, None

    async def sent(self) -> str:
        """Waits for a `send`'s answer and returns the task's id (raises the submit's error)."""
        if self._pending is not None:
            try:
                async with asyncio.timeout(self.client.timeout):
                    await asyncio.shield(self._pending)
            except TimeoutError:
                raise DeadlineExceeded(f"the scheduler did not answer a send within {self.client.timeout}s") from None
            except grpc.RpcError:
                pass  # _answered raises it, mapped
        return self.id

    async def state(self) -> TaskState:
        return TaskState((await self.client.get_result(await self.sent())).state)

    async def result(self, timeout: float | None = None) -> R:
        return outcome(await self.client.wait(await self.sent(), timeout))  # type: ignore[no-any-return]

    async def cancel(self) -> TaskState:
        return await self.client.cancel(await self.sent())

    async def watch(self, timeout: float | None = None) -> AsyncIterator[TaskEvent]:
        """Yields every state change until the task finishes."""
        async for event in self.client.watch(await self.sent(), timeout):
            yield event

    async def info(self) -> task_pb2.Task:
        return await self.client.get_task(await self.sent())
