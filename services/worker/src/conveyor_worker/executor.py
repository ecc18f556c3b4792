"""Runs one leased attempt and turns its outcome into a TaskAck.

`async def` handlers run on the event loop under the attempt's deadline; plain functions
run in a thread pool. Ordinary exceptions ask for a retry (the task's retry policy decides
whether there is one); a missing handler or an undecodable payload does not.
"""

from __future__ import annotations

import asyncio
import functools
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from google.protobuf.duration_pb2 import Duration

from conveyor import App, Retry
from conveyor.serialization import decode_call, encode_result
from conveyor.v1 import task_pb2


class UnknownTask(Exception):
    """This worker has no handler of that name."""


class TimeLimitExceeded(Exception):
    """The attempt ran past its deadline."""


def _failure(exc: BaseException, *, retry: bool, delay: float | None = None) -> task_pb2.TaskFailure:
    failure = task_pb2.TaskFailure(
        error=task_pb2.TaskError(type=type(exc).__name__, message=str(exc),
                                 traceback="".join(traceback.format_exception(exc))),
        retry=retry)
    if delay is not None:
        failure.retry_delay.CopyFrom(Duration(seconds=int(delay), nanos=int(delay % 1 * 1e9)))
    return failure


async def execute(app: App, leased: task_pb2.LeasedTask, pool: ThreadPoolExecutor) -> task_pb2.TaskAck:
    task = leased.task
    ack = task_pb2.TaskAck(task_id=task.id, lease_token=leased.lease_token)
    definition = app.tasks.get(task.name)
    try:
        if definition is None:
            raise UnknownTask(f"no handler named {task.name!r} on this worker")
        args, kwargs = decode_call(task.payload, task.content_type)
    except (UnknownTask, ValueError) as exc:
        ack.failure.CopyFrom(_failure(exc, retry=False))
        return ack
    remaining = leased.deadline.ToMilliseconds() / 1000 - time.time()
    try:
        value: Any
        if definition.is_async:
            async with asyncio.timeout(max(remaining, 0.001)):
                value = await definition.fn(*args, **kwargs)
        else:
            loop = asyncio.get_running_loop()
            value = await loop.run_in_executor(pool, functools.partial(definition.fn, *args, **kwargs))
        data = encode_result(value)
    except Retry as exc:
        ack.failure.CopyFrom(_failure(exc, retry=True, delay=exc.delay))
    except TimeoutError:
        ack.failure.CopyFrom(_failure(TimeLimitExceeded(f"the attempt ran past its time limit of "
                                                        f"{task.timeout.ToMilliseconds() / 1000}s"), retry=True))
    except Exception as exc:  # noqa: BLE001 - any handler error is the task's outcome
        ack.failure.CopyFrom(_failure(exc, retry=True))
    else:
        ack.result.data = data
    return ack
