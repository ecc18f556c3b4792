"""The synchronous client and its task handle."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from concurrent.futures import wait as wait_all
from typing import Any, Generic, TypeVar

import grpc

from conveyor.admin import Admin
from conveyor.calls import renamed
from conveyor.canvas import OnFailure
from conveyor.channels import TLSConfig, open_channel
from conveyor.common import (
    DEFAULT_TARGET,
    MAX_IDS,
    MAX_WAIT_CHUNK,
    Call,
    TaskEvent,
    TaskState,
    duration,
    ids_of,
    outcome,
    submit_request,
)
from conveyor.errors import ResultTimeout
from conveyor.errors import mapped_rpc_errors as _rpc
from conveyor.options import SubmitOptions
from conveyor.pipeline import PipelineCallError, SyncPipeline
from conveyor.pushed import AwaitPush, in_order, waiting
from conveyor.resilience import call_with_retry
from conveyor.schedules import Schedules
from conveyor.telemetry import producer_spans, tracer
from conveyor.v1 import task_pb2, task_service_pb2, task_service_pb2_grpc
from conveyor.workflow_graph import Workflow
from conveyor.workflows import WorkflowHandle, Workflows

R = TypeVar("R")


class Client:
    """Talks to a scheduler: submit tasks and read their state and results, submit workflows
    (`submit_workflow`, `workflow`); operator calls under `admin`, periodic schedules under
    `schedules`. AsyncClient has the same surface."""

    admin: Admin
    """Queues, task search and bulk actions, dead letters, the worker registry and worker control
    (AdminService)."""
    schedules: Schedules
    """Periodic schedules (ScheduleService)."""

    def __init__(self, target: str = DEFAULT_TARGET, *, channel: grpc.Channel | None = None,
                 tls: TLSConfig | None = None, token: str | None = None, timeout: float = 30.0,
                 pipeline: bool = True) -> None:
        """`tls` and `token` (else CONVEYOR_TLS_* and CONVEYOR_TOKEN) secure the channel opened to
        `target` (see conveyor.channels); a given `channel` is used as it is."""
        if channel is not None and (tls is not None or token is not None):
            raise ValueError("tls and token configure the channel Client opens: not given with channel=")
        self._channel = channel or open_channel(target, tls=tls, token=token)
        self._stub = task_service_pb2_grpc.TaskServiceStub(self._channel)
        self._pipeline = SyncPipeline(self._channel) if pipeline else None
        """Submit and result reads go over one Pipeline stream (not while tracing: a traced call
        stays a unary call, so its server span has the caller's context)."""
        self.admin = Admin(self._channel, self)
        self.schedules = Schedules(self._channel, self)
        self._workflows = Workflows(self._channel, self)
        """WorkflowService, for the workflow handles."""
        self._sends: set[Future[task_service_pb2.SubmitResponse]] = set()
        """Sends not yet answered, and refused ones flush() has not reported yet."""
        self.timeout = timeout

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Closes the channel, after waiting (up to `timeout`) for sends still unanswered, so
        none is cut off in flight. Refusals are not raised here: flush() reports them."""
        if self._pipeline is not None:
            wait_all(list(self._sends), self.timeout)
            self._pipeline.close()
        self._channel.close()

    def submit(self, name: str, args: Sequence[Any] = (), kwargs: dict[str, Any] | None = None,
               **options: Any) -> TaskHandle[Any]:
        """Submits one task by name; options are SubmitOptions fields."""
        return self.submit_many([Call(name, args, kwargs or {}, SubmitOptions(**options))])[0]

    def submit_many(self, calls: Sequence[Call | task_pb2.TaskSpec]) -> list[TaskHandle[Any]]:
        """Submits a batch in one call; it is accepted or rejected whole."""
        request = submit_request(calls)
        with producer_spans(request) as spans:  # no-op unless an OpenTelemetry SDK is installed
            with _rpc():
                resp = self._submit(request, spans.metadata)
            spans.sent(resp)
        return [TaskHandle(self, t.id, t.queue) for t in resp.tasks]

    def send(self, name: str, args: Sequence[Any] = (), kwargs: dict[str, Any] | None = None,
             **options: Any) -> TaskHandle[Any]:
        """Submits one task without waiting for the scheduler's answer (like a Kafka producer's
        send): sends that queue up behind each other go out merged into one batch. The task is
        stored once the handle's `id` (or `result()`) returns, which raises the submit's error
        if it failed; `flush()` waits for every send. A send is not retried. While tracing,
        and with pipeline=False, it waits like `submit`."""
        return self.send_call(Call(name, args, kwargs or {}, SubmitOptions(**options)))

    def send_call(self, call: Call | task_pb2.TaskSpec) -> TaskHandle[Any]:
        """`send` of a prepared Call (what `task.s(...)` makes) or TaskSpec."""
        if self._pipeline is None or tracer() is not None:
            return self.submit_many([call])[0]
        request = submit_request([call])
        future = self._pipeline.send(request)
        self._sends.add(future)
        future.add_done_callback(self._answered)
        return TaskHandle(self, pending=future)

    def _answered(self, future: Future[task_service_pb2.SubmitResponse]) -> None:
        if future.exception() is None:  # a refusal stays until flush() reports it
            self._sends.discard(future)

    def flush(self, timeout: float | None = None) -> None:
        """Waits until every task `send` so far is stored or refused; raises the first refusal
        not yet reported (each refused handle also raises its own from `id` and `result()`)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        first: BaseException | None = None
        for future in list(self._sends):
            left = None if deadline is None else max(deadline - time.monotonic(), 0)
            try:
                failure = future.exception(left)
            except FutureTimeout:
                late = sum(not f.done() for f in self._sends)
                raise ResultTimeout(f"{late} sends were not answered within {timeout}s") from None
            self._sends.discard(future)
            first = first or failure
        if first is not None:
            with _rpc():
                raise first

    def _submit(self, request: task_service_pb2.SubmitRequest, metadata: Any, wait: float = 0.0
                ) -> task_service_pb2.SubmitResponse:
        """Submit over the pipeline, or as a unary call when tracing (metadata carries the
        context); retried through an outage only when every task has an idempotency key.
        `wait` (the request's wait_results) is added to each attempt's timeout."""
        if self._pipeline is not None and metadata is None:
            send = self._pipeline.submit
        else:
            def send(request: task_service_pb2.SubmitRequest, timeout: float) -> task_service_pb2.SubmitResponse:
                return self._stub.Submit(request, timeout=timeout, metadata=metadata)
        if all(spec.idempotency_key for spec in request.tasks):  # safe to retry
            return call_with_retry(lambda left: send(request, wait + left), self.timeout)
        return send(request, wait + self.timeout)

    def _get_results(self, request: task_service_pb2.GetResultsRequest, timeout: float
                     ) -> task_service_pb2.GetResultsResponse:
        if self._pipeline is not None:
            return self._pipeline.get_results(request, timeout)
        return self._stub.GetResults(request, timeout=timeout)

    def run(self, name: str, args: Sequence[Any] = (), kwargs: dict[str, Any] | None = None, *,
            timeout: float | None = None, **options: Any) -> Any:
        """Submits one task and waits for its value in the same call (one round trip; the
        scheduler answers as soon as the task's ack reaches it). Raises like handle.result()."""
        request = submit_request([Call(name, args, kwargs or {}, SubmitOptions(**options))])
        deadline = None if timeout is None else time.monotonic() + timeout
        request.wait_results.CopyFrom(duration(MAX_WAIT_CHUNK if timeout is None else min(timeout, MAX_WAIT_CHUNK)))
        with producer_spans(request) as spans:
            with _rpc():
                resp = self._submit(request, spans.metadata, request.wait_results.ToMilliseconds() / 1000)
            spans.sent(resp)
        if TaskState(resp.results[0].state).terminal:
            return outcome(resp.results[0])
        left = None if deadline is None else max(deadline - time.monotonic(), 0.001)
        return outcome(self.wait(resp.tasks[0].id, left))

    def results(self, tasks: Sequence[TaskHandle[Any] | str], timeout: float | None = None) -> list[Any]:
        """The values of many tasks, in order, waited for in batched calls; raises the
        first failure (in order) like handle.result()."""
        return [outcome(r) for r in self.wait_many(tasks, timeout)]

    def wait_many(self, tasks: Sequence[TaskHandle[Any] | str], timeout: float | None = None
                  ) -> list[task_service_pb2.GetResultResponse]:
        """Blocks until every task is terminal (or raises ResultTimeout); GetResults in
        chunks of 10,000 ids."""
        ids = ids_of(tasks)
        pushed = self._pipeline.pushed.results(ids) if self._pipeline is not None else {}
        deadline = None if timeout is None else time.monotonic() + timeout
        out: list[task_service_pb2.GetResultResponse] = []
        unread = [i for i in ids if i not in pushed]
        for first in range(0, len(unread), MAX_IDS):
            chunk = unread[first:first + MAX_IDS]
            while True:
                remaining = MAX_WAIT_CHUNK if deadline is None else min(MAX_WAIT_CHUNK, deadline - time.monotonic())
                req = task_service_pb2.GetResultsRequest(task_ids=chunk, wait=duration(max(remaining, 0.001)))
                with _rpc():
                    resp = call_with_retry(lambda left, req=req: self._get_results(
                        req, req.wait.ToMilliseconds() / 1000 + left), self.timeout)
                if all(TaskState(r.state).terminal or r.state == 0 for r in resp.results):
                    out += resp.results
                    break
                if deadline is not None and time.monotonic() >= deadline:
                    raise ResultTimeout(f"{sum(not TaskState(r.state).terminal for r in resp.results)} of "
                                        f"{len(ids)} tasks did not finish within {timeout}s")
        return in_order(ids, pushed, out)

    def get_result(self, task_id: str, wait: float | None = None) -> task_service_pb2.GetResultResponse:
        if self._pipeline is not None:  # GetResults of one id, on the stream
            many = task_service_pb2.GetResultsRequest(task_ids=[task_id])
            if wait:
                many.wait.CopyFrom(duration(wait))
            with _rpc():
                resp = call_with_retry(lambda left: self._pipeline.get_results(  # type: ignore[union-attr]
                    many, (wait or 0) + left), self.timeout).results[0]
                if resp.state == 0:  # what GetResult answers with NOT_FOUND
                    raise PipelineCallError(grpc.StatusCode.NOT_FOUND,
                                            f"no task {task_id} (it never existed, or its record expired)")
            return resp
        req = task_service_pb2.GetResultRequest(task_id=task_id)
        if wait:
            req.wait.CopyFrom(duration(wait))
        with _rpc():
            return call_with_retry(lambda left: self._stub.GetResult(req, timeout=(wait or 0) + left), self.timeout)

    def get_task(self, task_id: str) -> task_pb2.Task:
        req = task_service_pb2.GetTaskRequest(task_id=task_id)
        with _rpc():
            return call_with_retry(lambda left: self._stub.GetTask(req, timeout=left), self.timeout).task

    def cancel(self, task_id: str) -> TaskState:
        req = task_service_pb2.CancelRequest(task_id=task_id)
        with _rpc():
            resp = call_with_retry(lambda left: self._stub.Cancel(req, timeout=left), self.timeout)
        return TaskState(resp.state)

    def watch(self, task_id: str, timeout: float | None = None) -> Iterator[TaskEvent]:
        """Yields the task's state changes, from its current state until it finishes."""
        with _rpc():
            for resp in self._stub.WatchTask(task_service_pb2.WatchTaskRequest(task_id=task_id), timeout=timeout):
                yield TaskEvent.of(resp)

    def handle(self, task_id: str) -> TaskHandle[Any]:
        """A handle for a task submitted elsewhere."""
        return TaskHandle(self, task_id)

    def wait(self, task_id: str, timeout: float | None = None) -> task_service_pb2.GetResultResponse:
        """Blocks until the task is terminal (or raises ResultTimeout): `pushed.waiting`'s steps."""
        steps = waiting(task_id, timeout, self._pipeline.pushed.slot(task_id) if self._pipeline else None,
                        time.monotonic)
        reply: Any = None
        while True:
            try:
                step = steps.send(reply)
            except StopIteration as done:
                return done.value  # type: ignore[no-any-return]
            if isinstance(step, AwaitPush):
                try:
                    reply = (step.slot.result(step.timeout), True)
                except FutureTimeout:
                    reply = (None, False)
            else:
                reply = self.get_result(task_id, wait=step.wait)

    def submit_workflow(self, workflow: Workflow, *, on_failure: OnFailure | None = None,
                        name: str | None = None) -> WorkflowHandle:
        """Submits a canvas (`a.s(1) | b.s()`, group, chord, or one signature) as one workflow, or
        a WorkflowSpec as it is (then `on_failure` and `name`, when given, replace its own).
        `on_failure`: "fail_fast" (the default: the first failed node ends the workflow FAILED
        and cancels the rest) or "continue" (every node runs; see README "Workflows"). `name`
        defaults to the canvas in a line. Not retried through an outage: each call makes a new
        workflow."""
        submitted = self._workflows.submit(workflow, on_failure, name)
        return WorkflowHandle(self, submitted.id, submitted)

    def workflow(self, workflow_id: str) -> WorkflowHandle:
        """A handle for a workflow submitted elsewhere (no call is made)."""
        return WorkflowHandle(self, workflow_id)

    # Deprecated names from before the sub-clients (issue 14): they warn and delegate.
    dead_letters = renamed("admin", Admin.list_dead_letters)
    requeue_dead = renamed("admin", Admin.requeue_dead_letters)
    purge_dead = renamed("admin", Admin.purge_dead_letters)
    create_schedule = renamed("schedules", Schedules.create)
    update_schedule = renamed("schedules", Schedules.update)
    apply_schedule = renamed("schedules", Schedules.apply)
    delete_schedule = renamed("schedules", Schedules.delete)
    pause_schedule = renamed("schedules", Schedules.pause)
    resume_schedule = renamed("schedules", Schedules.resume)
    get_schedule = renamed("schedules", Schedules.get)
    list_schedules = renamed("schedules", Schedules.list)
    beat_leader = renamed("schedules", Schedules.beat_leader)


class TaskHandle(Generic[R]):
    """A submitted task: its id, state, result and cancellation."""

    def __init__(self, client: Client, task_id: str = "", queue: str = "", *,
                 pending: Future[task_service_pb2.SubmitResponse] | None = None) -> None:
        self.client = client
        self._id = task_id
        self._queue = queue
        self._pending = pending
        """A `send` not yet answered: `id` and `queue` wait for it."""
        if client._pipeline is not None:
            client._pipeline.pushed.keep_for(self, pending or task_id)

    @property
    def id(self) -> str:
        self._confirm()
        return self._id

    @property
    def queue(self) -> str:
        self._confirm()
        return self._queue

    def _confirm(self) -> None:
        if self._pending is None:
            return
        with _rpc():
            try:
                task = self._pending.result(self.client.timeout).tasks[0]
            except FutureTimeout:
                raise PipelineCallError(grpc.StatusCode.DEADLINE_EXCEEDED,
                                        f"the scheduler did not answer a send within {self.client.timeout}s") from None
        self._id, self._queue, self._pending = task.id, task.queue, None

    def __repr__(self) -> str:
        if self._pending is not None and not self._pending.done():
            return "TaskHandle(<sent, not answered yet>)"
        return f"TaskHandle({self.id!r}, queue={self.queue!r})"

    def sent(self) -> str:
        """Waits for a `send`'s answer and returns the task's id (raises the submit's error);
        the same as reading `id`, named as on AsyncTaskHandle."""
        return self.id

    @property
    def state(self) -> TaskState:
        return TaskState(self.client.get_result(self.id).state)

    def result(self, timeout: float | None = None) -> R:
        """Waits for the task and returns its value; raises TaskFailed/TaskCancelled/ResultTimeout."""
        return outcome(self.client.wait(self.id, timeout))  # type: ignore[no-any-return]

    def cancel(self) -> TaskState:
        """Cancels the task: at once if it has not started, through its worker if it runs."""
        return self.client.cancel(self.id)

    def watch(self, timeout: float | None = None) -> Iterator[TaskEvent]:
        """Yields every state change until the task finishes."""
        return self.client.watch(self.id, timeout)

    def info(self) -> task_pb2.Task:
        return self.client.get_task(self.id)
