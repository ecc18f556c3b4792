"""Runs one leased attempt and turns its outcome into a TaskAck.

`async def` handlers run on the event loop; plain functions run in a thread pool (inside
the attempt's contextvars context, so `current_task()` works there too). Time limits:
- soft (optional): an async handler is cancelled (CancelledError at its next await); a
  sync one sees `current_task().soft_time_limit_exceeded` and may stop. Reported as
  SoftTimeLimitExceeded and retried per policy.
- hard (timeout): an async handler is cancelled; a sync one is abandoned in its thread.
  Reported as TimeLimitExceeded and retried per policy.
A cancel request cancels an async handler and sets `current_task().cancelled` for a sync
one; the attempt is reported as cancelled. Other exceptions are retried (while retries
remain) when they match the task's `retry_for` and not its `dont_retry_for`; a missing
handler or an undecodable payload never is.
"""

from __future__ import annotations

import asyncio
import functools
import time
import traceback
from concurrent.futures import Executor
from typing import Any

from google.protobuf.duration_pb2 import Duration

from conveyor import App, Retry
from conveyor.app import Task
from conveyor.context import TaskContext, bind
from conveyor.errors import SoftTimeLimitExceeded, TimeLimitExceeded
from conveyor.serialization import decode_call, encode_result
from conveyor.v1 import task_pb2


class UnknownTask(Exception):
    """This worker has no handler of that name."""


def context_for(leased: task_pb2.LeasedTask) -> TaskContext:
    task = leased.task
    started = task.started_at.ToMilliseconds() / 1000 if task.HasField("started_at") else time.time()
    soft = started + task.soft_timeout.ToMilliseconds() / 1000 if task.HasField("soft_timeout") else None
    return TaskContext(id=task.id, name=task.name, queue=task.queue, attempt=task.attempt,
                       max_retries=task.retry.max_retries, headers=dict(task.headers),
                       deadline=leased.deadline.ToMilliseconds() / 1000, soft_deadline=soft)


def _failure(exc: BaseException, *, retry: bool, delay: float | None = None) -> task_pb2.TaskFailure:
    failure = task_pb2.TaskFailure(
        error=task_pb2.TaskError(type=type(exc).__name__, message=str(exc),
                                 traceback="".join(traceback.format_exception(exc))),
        retry=retry)
    if delay is not None:
        failure.retry_delay.CopyFrom(Duration(seconds=int(delay), nanos=int(delay % 1 * 1e9)))
    return failure


async def execute(app: App, leased: task_pb2.LeasedTask, pool: Executor, ctx: TaskContext | None = None
                  ) -> task_pb2.TaskAck:
    task = leased.task
    ctx = ctx or context_for(leased)
    ack = task_pb2.TaskAck(task_id=task.id, lease_token=leased.lease_token)
    definition = app.tasks.get(task.name)
    try:
        if definition is None:
            raise UnknownTask(f"no handler named {task.name!r} on this worker")
        args, kwargs = decode_call(task.payload, task.content_type)
    except (UnknownTask, ValueError) as exc:
        ack.failure.CopyFrom(_failure(exc, retry=False))
        return ack
    bind(ctx)
    try:
        if definition.is_async:
            value = await _run_async(definition, args, kwargs, ctx)
        else:
            value = await _run_sync(pool, definition, args, kwargs, ctx)
        data = encode_result(value)
    except Retry as exc:
        ack.failure.CopyFrom(_failure(exc, retry=True, delay=exc.delay))
    except (TimeLimitExceeded, SoftTimeLimitExceeded) as exc:
        ack.failure.CopyFrom(_failure(exc, retry=True))
    except asyncio.CancelledError:
        if not ctx.cancelled:
            raise  # the worker is shutting down and hands the task back
        _uncancel()
        ack.cancelled.reason = "cancel requested"
    except Exception as exc:  # noqa: BLE001 - any handler error is the task's outcome
        if ctx.cancelled:
            ack.cancelled.reason = "cancel requested"
        else:
            retry = isinstance(exc, definition.retry_for) and not isinstance(exc, definition.dont_retry_for)
            ack.failure.CopyFrom(_failure(exc, retry=retry))
    else:
        ack.result.data = data
    return ack


async def _run_async(definition: Task[Any, Any], args: list[Any], kwargs: dict[str, Any], ctx: TaskContext) -> Any:
    loop = asyncio.get_running_loop()
    me = asyncio.current_task()
    soft_timer = None
    if ctx.soft_deadline is not None and me is not None:
        def soft_limit() -> None:
            ctx._soft.set()
            me.cancel("soft time limit exceeded")
        soft_timer = loop.call_later(max(ctx.soft_deadline - time.time(), 0), soft_limit)
    try:
        async with asyncio.timeout(max(ctx.deadline - time.time(), 0.001)):
            return await definition.fn(*args, **kwargs)
    except TimeoutError:
        raise TimeLimitExceeded(f"the attempt ran past its time limit (deadline {ctx.deadline:.3f})") from None
    except asyncio.CancelledError:
        if ctx.soft_time_limit_exceeded and not ctx.cancelled:
            _uncancel()
            raise SoftTimeLimitExceeded("the attempt ran past its soft time limit") from None
        raise
    finally:
        if soft_timer is not None:
            soft_timer.cancel()


_busy_threads = 0


def busy_threads() -> int:
    """Sync handlers still running in their threads (abandoned ones included)."""
    return _busy_threads


def _thread_done(_: object) -> None:
    global _busy_threads  # noqa: PLW0603 - touched only on the event loop
    _busy_threads -= 1


async def _run_sync(pool: Executor, definition: Task[Any, Any], args: list[Any], kwargs: dict[str, Any],
                    ctx: TaskContext) -> Any:
    global _busy_threads  # noqa: PLW0603 - touched only on the event loop
    loop = asyncio.get_running_loop()
    future = loop.run_in_executor(pool, functools.partial(definition.fn, *args, **kwargs))
    _busy_threads += 1
    future.add_done_callback(_thread_done)
    soft_timer = None
    if ctx.soft_deadline is not None:
        soft_timer = loop.call_later(max(ctx.soft_deadline - time.time(), 0), ctx._soft.set)
    try:
        done, _ = await asyncio.wait({future}, timeout=max(ctx.deadline - time.time(), 0.001))
    finally:
        if soft_timer is not None:
            soft_timer.cancel()
    if not done:  # a thread cannot be killed: abandon it, tell it to stop, report the limit
        ctx._soft.set()
        ctx._cancel.set()
        raise TimeLimitExceeded("the attempt ran past its time limit; its thread was abandoned")
    return future.result()


def _uncancel() -> None:
    task = asyncio.current_task()
    if task is not None:
        task.uncancel()
