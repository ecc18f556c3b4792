"""The synchronous client and its task handle."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Generic, TypeVar

import grpc
from google.protobuf.duration_pb2 import Duration

from conveyor.common import CHANNEL_OPTIONS, DEFAULT_TARGET, MAX_WAIT_CHUNK, Call, TaskState, outcome, submit_request
from conveyor.errors import ResultTimeout, from_rpc_error
from conveyor.options import SubmitOptions
from conveyor.v1 import task_pb2, task_service_pb2, task_service_pb2_grpc

R = TypeVar("R")


@contextmanager
def _rpc() -> Iterator[None]:
    try:
        yield
    except grpc.RpcError as exc:
        raise from_rpc_error(exc) from None


class Client:
    """Talks to a scheduler: submit tasks and read their state and results."""

    def __init__(self, target: str = DEFAULT_TARGET, *, channel: grpc.Channel | None = None,
                 timeout: float = 30.0) -> None:
        self._channel = channel or grpc.insecure_channel(target, options=CHANNEL_OPTIONS)
        self._stub = task_service_pb2_grpc.TaskServiceStub(self._channel)
        self.timeout = timeout

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._channel.close()

    def submit(self, name: str, args: Sequence[Any] = (), kwargs: dict[str, Any] | None = None,
               **options: Any) -> TaskHandle[Any]:
        """Submits one task by name; options are SubmitOptions fields."""
        return self.submit_many([Call(name, args, kwargs or {}, SubmitOptions(**options))])[0]

    def submit_many(self, calls: Sequence[Call | task_pb2.TaskSpec]) -> list[TaskHandle[Any]]:
        """Submits a batch in one call; it is accepted or rejected whole."""
        with _rpc():
            resp = self._stub.Submit(submit_request(calls), timeout=self.timeout)
        return [TaskHandle(self, t.id, t.queue) for t in resp.tasks]

    def get_result(self, task_id: str, wait: float | None = None) -> task_service_pb2.GetResultResponse:
        req = task_service_pb2.GetResultRequest(task_id=task_id)
        if wait:
            req.wait.CopyFrom(Duration(seconds=int(wait), nanos=int(wait % 1 * 1e9)))
        with _rpc():
            return self._stub.GetResult(req, timeout=(wait or 0) + self.timeout)

    def get_task(self, task_id: str) -> task_pb2.Task:
        with _rpc():
            return self._stub.GetTask(task_service_pb2.GetTaskRequest(task_id=task_id), timeout=self.timeout).task

    def cancel(self, task_id: str) -> TaskState:
        with _rpc():
            resp = self._stub.Cancel(task_service_pb2.CancelRequest(task_id=task_id), timeout=self.timeout)
        return TaskState(resp.state)

    def handle(self, task_id: str) -> TaskHandle[Any]:
        """A handle for a task submitted elsewhere."""
        return TaskHandle(self, task_id)

    def wait(self, task_id: str, timeout: float | None = None) -> task_service_pb2.GetResultResponse:
        """Blocks until the task is terminal (or raises ResultTimeout)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            remaining = MAX_WAIT_CHUNK if deadline is None else min(MAX_WAIT_CHUNK, deadline - time.monotonic())
            resp = self.get_result(task_id, wait=max(remaining, 0.001))
            if TaskState(resp.state).terminal:
                return resp
            if deadline is not None and time.monotonic() >= deadline:
                raise ResultTimeout(f"task {task_id} did not finish within {timeout}s "
                                    f"(it is {TaskState(resp.state).name})")


class TaskHandle(Generic[R]):
    """A submitted task: its id, state, result and cancellation."""

    def __init__(self, client: Client, task_id: str, queue: str = "") -> None:
        self.client = client
        self.id = task_id
        self.queue = queue

    def __repr__(self) -> str:
        return f"TaskHandle({self.id!r}, queue={self.queue!r})"

    @property
    def state(self) -> TaskState:
        return TaskState(self.client.get_result(self.id).state)

    def result(self, timeout: float | None = None) -> R:
        """Waits for the task and returns its value; raises TaskFailed/TaskCancelled/ResultTimeout."""
        return outcome(self.client.wait(self.id, timeout))  # type: ignore[no-any-return]

    def cancel(self) -> TaskState:
        return self.client.cancel(self.id)

    def info(self) -> task_pb2.Task:
        return self.client.get_task(self.id)
