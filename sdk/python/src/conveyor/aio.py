"""The asyncio client and its task handle (same surface as the sync ones, awaitable)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Any, Generic, TypeVar

import grpc
from google.protobuf.duration_pb2 import Duration

from conveyor.common import (
    CHANNEL_OPTIONS,
    DEFAULT_TARGET,
    MAX_WAIT_CHUNK,
    Call,
    TaskEvent,
    TaskState,
    outcome,
    submit_request,
)
from conveyor.errors import ResultTimeout
from conveyor.errors import amapped_rpc_errors as _rpc
from conveyor.options import SubmitOptions
from conveyor.resilience import acall_with_retry, channel_options, channel_target
from conveyor.schedules import AsyncScheduleMethods
from conveyor.telemetry import producer_spans
from conveyor.v1 import task_pb2, task_service_pb2, task_service_pb2_grpc

R = TypeVar("R")


class AsyncClient(AsyncScheduleMethods):
    """Talks to a scheduler from asyncio code."""

    def __init__(self, target: str = DEFAULT_TARGET, *, channel: grpc.aio.Channel | None = None,
                 timeout: float = 30.0) -> None:
        self._channel = channel or grpc.aio.insecure_channel(channel_target(target),
                                                             options=channel_options(target, CHANNEL_OPTIONS))
        self._stub = task_service_pb2_grpc.TaskServiceStub(self._channel)
        self.timeout = timeout

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._channel.close()

    async def submit(self, name: str, args: Sequence[Any] = (), kwargs: dict[str, Any] | None = None,
                     **options: Any) -> AsyncTaskHandle[Any]:
        return (await self.submit_many([Call(name, args, kwargs or {}, SubmitOptions(**options))]))[0]

    async def submit_many(self, calls: Sequence[Call | task_pb2.TaskSpec]) -> list[AsyncTaskHandle[Any]]:
        request = submit_request(calls)
        with producer_spans(request) as spans:  # no-op unless an OpenTelemetry SDK is installed
            async with _rpc():
                if all(spec.idempotency_key for spec in request.tasks):  # safe to retry through an outage
                    resp = await acall_with_retry(
                        lambda left: self._stub.Submit(request, timeout=left, metadata=spans.metadata), self.timeout)
                else:
                    resp = await self._stub.Submit(request, timeout=self.timeout, metadata=spans.metadata)
            spans.sent(resp)
        return [AsyncTaskHandle(self, t.id, t.queue) for t in resp.tasks]

    async def get_result(self, task_id: str, wait: float | None = None) -> task_service_pb2.GetResultResponse:
        req = task_service_pb2.GetResultRequest(task_id=task_id)
        if wait:
            req.wait.CopyFrom(Duration(seconds=int(wait), nanos=int(wait % 1 * 1e9)))
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
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            remaining = MAX_WAIT_CHUNK if deadline is None else min(MAX_WAIT_CHUNK, deadline - loop.time())
            resp = await self.get_result(task_id, wait=max(remaining, 0.001))
            if TaskState(resp.state).terminal:
                return resp
            if deadline is not None and loop.time() >= deadline:
                raise ResultTimeout(f"task {task_id} did not finish within {timeout}s "
                                    f"(it is {TaskState(resp.state).name})")


class AsyncTaskHandle(Generic[R]):
    def __init__(self, client: AsyncClient, task_id: str, queue: str = "") -> None:
        self.client = client
        self.id = task_id
        self.queue = queue

    def __repr__(self) -> str:
        return f"AsyncTaskHandle({self.id!r}, queue={self.queue!r})"

    async def state(self) -> TaskState:
        return TaskState((await self.client.get_result(self.id)).state)

    async def result(self, timeout: float | None = None) -> R:
        return outcome(await self.client.wait(self.id, timeout))  # type: ignore[no-any-return]

    async def cancel(self) -> TaskState:
        return await self.client.cancel(self.id)

    def watch(self, timeout: float | None = None) -> AsyncIterator[TaskEvent]:
        """Yields every state change until the task finishes."""
        return self.client.watch(self.id, timeout)

    async def info(self) -> task_pb2.Task:
        return await self.client.get_task(self.id)
