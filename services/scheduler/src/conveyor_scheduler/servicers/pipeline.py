"""conveyor.v1.TaskService.Pipeline: Submit and GetResults calls over one stream.

A unary call costs grpc.aio roughly twice what one message on an open stream does, and a
producer submitting one task at a time pays it on every call. Each request runs as its own
asyncio task (so a call that waits for results never holds up the ones behind it) through
the same code as the unary handler, and its answer, or the status the unary call would have
ended with, goes back tagged with the request's call_id.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AbstractContextManager
from typing import Any, Protocol

import grpc

from conveyor.v1 import task_service_pb2
from conveyor_scheduler.background import Background
from conveyor_scheduler.errors import InvalidArgument
from conveyor_scheduler.grpc_glue import Malformed, status_for
from conveyor_scheduler.result_push import ResultPush, Send

log = logging.getLogger(__name__)

Handler = Callable[[Any, Any], Awaitable[Any]]


class Deadline(Protocol):
    """What a handler asks of its context: a unary call's, or a pipelined call's."""

    def time_remaining(self) -> float | None: ...


SubmitHandler = Callable[[task_service_pb2.SubmitRequest, Deadline, ResultPush],
                         Awaitable[task_service_pb2.SubmitResponse]]
NewPush = Callable[[Send], ResultPush]
RecordStatus = Callable[[int, str], None]
"""Records a call's status code (and its message when it failed)."""
CallSpan = Callable[[str], AbstractContextManager[RecordStatus]]
"""Opens the SERVER span of one pipelined call of a method, yielding its RecordStatus."""


def _no_status(code: int, message: str) -> None:
    pass


@contextlib.contextmanager
def no_call_span(method: str) -> Iterator[RecordStatus]:
    """The CallSpan while telemetry is off: no span."""
    yield _no_status


class _NoDeadline:
    """The context a pipelined call's handler sees: calls on a stream have no deadline of
    their own (waits are bounded by the wait fields)."""

    @staticmethod
    def time_remaining() -> None:
        return None


NO_DEADLINE = _NoDeadline()
SUBMIT = "conveyor.v1.TaskService/Submit"
GET_RESULTS = "conveyor.v1.TaskService/GetResults"
"""Pipelined calls get the SERVER spans of the unary calls they stand for."""


async def serve(requests: AsyncIterator[Any], context: grpc.aio.ServicerContext, submit: SubmitHandler,
                get_results: Handler, new_push: NewPush, call_span: CallSpan = no_call_span) -> None:
    """Runs until the client half-closes (then answers what is in flight) or the stream breaks.
    Each call writes its own answer (context.write, one at a time): no queue, no extra hop.
    Results pushed to the client (result_push) go out the same way, with call_id 0."""
    calls = Background()
    writing = asyncio.Lock()

    async def send_pushed(results: task_service_pb2.GetResultsResponse) -> None:
        async with writing:
            await context.write(task_service_pb2.PipelineResponse(pushed=results))

    push = new_push(send_pushed)

    async def submit_here(request: task_service_pb2.SubmitRequest, deadline: Deadline
                          ) -> task_service_pb2.SubmitResponse:
        return await submit(request, deadline, push)

    async def run(call_id: int, handler: Handler, request: Any, field: str, method: str) -> None:
        resp = task_service_pb2.PipelineResponse(call_id=call_id)
        with call_span(method) as status:
            try:
                getattr(resp, field).CopyFrom(await handler(request, NO_DEADLINE))
            except Exception as exc:  # one call's failure must not end the other calls' stream
                code, message = status_for(exc) or (None, "")  # what the unary call would have ended with
                if code is None:
                    log.exception("pipelined call %d failed", call_id)
                    code, message = grpc.StatusCode.INTERNAL, "internal error"
                resp.error.code, resp.error.message = code.value[0], message
            status(resp.error.code, resp.error.message)
        async with writing:
            try:
                await context.write(resp)
            except Exception as exc:  # noqa: BLE001 - the stream is gone; the reader ends with it
                log.debug("pipelined call %d: answer not sent (%s)", call_id, exc)

    try:
        async for msg in requests:
            if isinstance(msg, Malformed):
                raise InvalidArgument("message", msg.message)
            kind = msg.WhichOneof("call")
            if kind == "submit":
                calls.spawn(run(msg.call_id, submit_here, msg.submit, "submit", SUBMIT))
            elif kind == "get_results":
                calls.spawn(run(msg.call_id, get_results, msg.get_results, "get_results", GET_RESULTS))
            else:
                raise InvalidArgument("call", f"call {msg.call_id} sets neither submit nor get_results")
        if calls.tasks:  # the client half-closed: answer what is in flight, then end
            await asyncio.gather(*calls.tasks, return_exceptions=True)
    finally:
        push.close()
        for task in list(calls.tasks):
            task.cancel()
