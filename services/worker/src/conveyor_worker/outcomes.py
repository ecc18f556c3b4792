"""One attempt, and the one policy every runner follows to turn what happened into a TaskAck.

- A handler's return value is the result; `raise Retry(delay=...)` asks for a retry.
- Time limits: past the soft limit the attempt is reported as SoftTimeLimitExceeded, past
  the hard limit as TimeLimitExceeded; both are retried per the task's policy, unless the
  task names them in `dont_retry_for` (as conveyor.celery's tasks do: Celery fails them).
- A cancel request makes the attempt CANCELLED, whatever the handler raised on the way out.
- Other exceptions are retried (while retries remain) when they match the task's `retry_for`
  and not its `dont_retry_for`; a missing handler or an undecodable payload never is.
- A child process that died under its attempt is WorkerLost, retried per policy (unless in
  `dont_retry_for`).

Runners (`runner.py`) build their acks only through these functions.
"""

from __future__ import annotations

import time
import traceback
from typing import Any

from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp

from conveyor import App, Retry
from conveyor.app import Task
from conveyor.context import TaskContext
from conveyor.errors import SoftTimeLimitExceeded, TimeLimitExceeded
from conveyor.serialization import decode_call, encode_result
from conveyor.v1 import task_pb2


class UnknownTask(Exception):
    """This worker has no handler of that name."""


class WorkerLost(Exception):
    """The child process running the attempt died (a crash, os._exit, the OOM killer)."""


def _seconds(ts: Timestamp) -> float:
    """ts.ToMilliseconds() / 1000, without the method call (this runs once per task)."""
    return (ts.seconds * 1000 + ts.nanos // 1_000_000) / 1000


def context_for(leased: task_pb2.LeasedTask) -> TaskContext:
    task = leased.task
    soft = None
    if task.HasField("soft_timeout"):
        started = _seconds(task.started_at) if task.HasField("started_at") else time.time()
        soft = started + task.soft_timeout.ToMilliseconds() / 1000
    return TaskContext(id=task.id, name=task.name, queue=task.queue, attempt=task.attempt,
                       max_retries=task.retry.max_retries, headers=dict(task.headers),
                       deadline=_seconds(leased.deadline), soft_deadline=soft)


class Attempt:
    """One leased attempt from its start to its ack, whichever runner runs it. The fields
    after `kwargs` belong to the runner (its bookkeeping) and to telemetry (`trace`)."""

    __slots__ = ("abandoned", "ack", "args", "ctx", "definition", "due", "error", "handle", "kwargs",
                 "lease_token", "leased", "soft_due", "started", "stuck", "task_id", "trace")

    def __init__(self, leased: task_pb2.LeasedTask, ctx: TaskContext, definition: Task[Any, Any],
                 args: list[Any], kwargs: dict[str, Any]) -> None:
        self.leased, self.ctx, self.definition, self.args, self.kwargs = leased, ctx, definition, args, kwargs
        self.task_id, self.lease_token = ctx.id, leased.lease_token
        self.ack: task_pb2.TaskAck | None = None
        """Set once the handler returned or raised (by the thread, child or coroutine)."""
        self.error: BaseException | None = None
        """A BaseException (not an Exception) the handler raised: no ack, the worker logs it."""
        self.abandoned = False
        """Past its hard limit, or handed back: whatever the handler produces is dropped."""
        self.due = 0.0
        """The hard limit, in loop time (set by LimitTimer.watch)."""
        self.soft_due: float | None = None
        """The soft limit, in loop time, until it has passed."""
        self.started = False
        """A thread or child took it."""
        self.stuck = False
        """Thread runner: its thread was abandoned at the hard limit."""
        self.handle: Any = None
        """The runner's handle: the asyncio task, or the child and job number."""
        self.trace: Any = None
        """telemetry.Trace while telemetry is on."""


def prepare(app: App, leased: task_pb2.LeasedTask, ctx: TaskContext) -> Attempt | task_pb2.TaskAck:
    """An Attempt to run, or the failure ack of one that cannot run (unknown name, bad payload)."""
    task = leased.task
    definition = app.tasks.get(task.name)
    try:
        if definition is None:
            raise UnknownTask(f"no handler named {task.name!r} on this worker")
        args, kwargs = decode_call(task.payload, task.content_type)
    except (UnknownTask, ValueError) as exc:
        ack = task_pb2.TaskAck(task_id=task.id, lease_token=leased.lease_token)
        ack.failure.CopyFrom(failure(exc, retry=False))
        return ack
    return Attempt(leased, ctx, definition, args, kwargs)


def failure(exc: BaseException, *, retry: bool, delay: float | None = None) -> task_pb2.TaskFailure:
    fail = task_pb2.TaskFailure(
        error=task_pb2.TaskError(type=type(exc).__name__, message=str(exc),
                                 traceback="".join(traceback.format_exception(exc))),
        retry=retry)
    if delay is not None:
        fail.retry_delay.CopyFrom(Duration(seconds=int(delay), nanos=int(delay % 1 * 1e9)))
    return fail


def settle(ack: task_pb2.TaskAck, exc: Exception, ctx: TaskContext, definition: Task[Any, Any]) -> None:
    """Records a handler's exception as the attempt's outcome."""
    if isinstance(exc, Retry):
        ack.failure.CopyFrom(failure(exc, retry=True, delay=exc.delay))
    elif isinstance(exc, (TimeLimitExceeded, SoftTimeLimitExceeded, WorkerLost)):  # whatever retry_for says
        ack.failure.CopyFrom(failure(exc, retry=not isinstance(exc, definition.dont_retry_for)))
    elif ctx.cancelled:
        ack.cancelled.reason = "cancel requested"
    else:
        retry = isinstance(exc, definition.retry_for) and not isinstance(exc, definition.dont_retry_for)
        ack.failure.CopyFrom(failure(exc, retry=retry))


def outcome(attempt: Attempt, value: Any) -> task_pb2.TaskAck:
    """The ack of a handler that returned `value` (a result that cannot be encoded fails it)."""
    ack = task_pb2.TaskAck(task_id=attempt.task_id, lease_token=attempt.lease_token)
    try:
        ack.result.data = encode_result(value)
    except Exception as exc:  # noqa: BLE001 - an unencodable result is the task's failure
        settle(ack, exc, attempt.ctx, attempt.definition)
    return ack


def raised(attempt: Attempt, exc: Exception) -> task_pb2.TaskAck:
    """The ack of a handler that raised `exc` (or was stopped with it: a limit, a lost child)."""
    ack = task_pb2.TaskAck(task_id=attempt.task_id, lease_token=attempt.lease_token)
    settle(ack, exc, attempt.ctx, attempt.definition)
    return ack


def cancelled(task_id: str, lease_token: str) -> task_pb2.TaskAck:
    """The ack of an attempt stopped by a cancel request (or cancelled before it started)."""
    ack = task_pb2.TaskAck(task_id=task_id, lease_token=lease_token)
    ack.cancelled.reason = "cancel requested"
    return ack


def hard_limit(attempt: Attempt, what: str) -> task_pb2.TaskAck:
    """The ack of an attempt stopped at its hard time limit (`what` says how it was stopped)."""
    return raised(attempt, TimeLimitExceeded(f"the attempt ran past its time limit; {what}"))
