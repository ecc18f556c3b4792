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

While telemetry is off, plain functions skip `execute` and the asyncio machinery: the worker
hands them to `TaskThreads` as `SyncAttempt`s, with the same context, limits and outcomes
at a fraction of the cost per task (see TaskThreads).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import contextvars
import functools
import logging
import queue
import threading
import time
import traceback
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any

from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp

from conveyor import App, Retry
from conveyor.app import Task
from conveyor.context import TaskContext, bind
from conveyor.errors import SoftTimeLimitExceeded, TimeLimitExceeded
from conveyor.serialization import decode_call, encode_result
from conveyor.v1 import task_pb2

log = logging.getLogger(__name__)


class UnknownTask(Exception):
    """This worker has no handler of that name."""


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
    except asyncio.CancelledError:
        if not ctx.cancelled:
            raise  # the worker is shutting down and hands the task back
        _uncancel()
        ack.cancelled.reason = "cancel requested"
    except Exception as exc:  # noqa: BLE001 - any handler error is the task's outcome
        _settle(ack, exc, ctx, definition)
    else:
        ack.result.data = data
    return ack


def _settle(ack: task_pb2.TaskAck, exc: Exception, ctx: TaskContext, definition: Task[Any, Any]) -> None:
    """Records a handler's exception as the attempt's outcome."""
    if isinstance(exc, Retry):
        ack.failure.CopyFrom(_failure(exc, retry=True, delay=exc.delay))
    elif isinstance(exc, (TimeLimitExceeded, SoftTimeLimitExceeded)):
        ack.failure.CopyFrom(_failure(exc, retry=True))
    elif ctx.cancelled:
        ack.cancelled.reason = "cancel requested"
    else:
        retry = isinstance(exc, definition.retry_for) and not isinstance(exc, definition.dont_retry_for)
        ack.failure.CopyFrom(_failure(exc, retry=retry))


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


class SyncAttempt:
    """One attempt of a plain-function handler on `TaskThreads` (the fast path, used while
    telemetry is off: an attempt then needs no asyncio task, future or span)."""

    __slots__ = ("abandoned", "ack", "args", "context", "ctx", "definition", "due", "error", "kwargs",
                 "lease_token", "soft_due", "started", "stuck", "task_id")

    def __init__(self, task_id: str, lease_token: str, ctx: TaskContext, definition: Task[Any, Any],
                 args: list[Any], kwargs: dict[str, Any]) -> None:
        self.task_id, self.lease_token, self.ctx = task_id, lease_token, ctx
        self.definition, self.args, self.kwargs = definition, args, kwargs
        self.context: contextvars.Context | None = None
        self.ack: task_pb2.TaskAck | None = None
        """Set by the thread when the handler returned or raised."""
        self.error: BaseException | None = None
        """A BaseException (not an Exception) the handler raised: no ack, as with execute()."""
        self.abandoned = False
        """Past its hard limit, or handed back: whatever the thread produces is dropped."""
        self.due = 0.0
        """The hard limit, in loop time."""
        self.soft_due: float | None = None
        """The soft limit, in loop time, until it has passed."""
        self.started = False
        """A thread took it (set by the thread)."""
        self.stuck = False
        """Its thread was abandoned at the hard limit: it leaves the pool when the handler returns."""

    def run(self) -> None:
        """In a pool thread, inside `context`: runs the handler and builds the ack (as execute() does)."""
        ctx, definition = self.ctx, self.definition
        bind(ctx)
        ack = task_pb2.TaskAck(task_id=self.task_id, lease_token=self.lease_token)
        if ctx.cancelled:  # cancelled while it waited for a thread (prefetched): it never runs
            ack.cancelled.reason = "cancel requested"
            self.ack = ack
            return
        try:
            data = encode_result(definition.fn(*self.args, **self.kwargs))
        except Exception as exc:  # noqa: BLE001 - any handler error is the task's outcome
            _settle(ack, exc, ctx, definition)
        except BaseException as exc:  # noqa: BLE001 - reported on the loop, like an escaping exception
            self.error = exc
        else:
            ack.result.data = data
        self.ack = ack

    def cancel(self, msg: str | None = None) -> None:
        """Hands the attempt back (shutdown): its thread runs on, its outcome is dropped."""
        self.abandoned = True


_TIMER_SLACK = 0.001
"""How early a limit may be seen as reached: uvloop's timers count whole milliseconds and
fire up to half of one early (asyncio's own loop allows its clock's resolution)."""


class TaskThreads:
    """Runs SyncAttempts in threads with fewer hand-offs than run_in_executor + asyncio.wait.

    The loop puts each attempt on a queue that idle threads take from, so every attempt
    starts as soon as a thread is free (a thread per running attempt, as with one pool job
    each; threads abandoned at their hard limit keep theirs, hence the headroom). A thread
    runs the handler in a copy of the loop's context with current_task() bound and builds
    the ack itself; finished attempts return to the loop in bulk: one wake-up carries every
    attempt finished since the last one. Time limits share one loop timer, armed for the
    earliest limit of the attempts in progress (a timer per attempt cost more than the task).
    """

    def __init__(self, concurrency: int, on_done: Callable[[SyncAttempt, task_pb2.TaskAck], None],
                 after_drain: Callable[[], None] = lambda: None) -> None:
        self._concurrency = concurrency
        self._after_drain = after_drain
        """Called once a wake-up's finished attempts were handed to on_done (the worker sends
        their acks at once, not an event-loop iteration later)."""
        self._stuck = 0
        """Threads abandoned at a hard limit whose handler still runs (each has a replacement)."""
        self._stuck_lock = threading.Lock()
        """Orders a thread's "my handler returned" against the loop's "you are abandoned"."""
        self._on_done = on_done
        self._jobs: queue.SimpleQueue[SyncAttempt | None] = queue.SimpleQueue()
        self._finished: collections.deque[SyncAttempt] = collections.deque()
        self._wakeup_pending = False
        self._threads = 0
        self._excess = 0
        """Threads to retire after a shrink (resize): each leaves before taking its next
        attempt. Guarded by _stuck_lock (threads read it)."""
        self._closing = False
        self._busy = 0
        """Attempts handed to threads and not yet seen finished (abandoned ones included)."""
        self._limited: set[SyncAttempt] = set()
        """Attempts whose limits the timer watches (handed-back ones until its next round)."""
        self._timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self, attempt: SyncAttempt) -> None:
        global _busy_threads  # noqa: PLW0603 - touched only on the event loop
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        ctx = attempt.ctx
        attempt.context = contextvars.copy_context()
        now, wall = loop.time(), time.time()
        first = attempt.due = now + max(ctx.deadline - wall, 0.001)
        if ctx.soft_deadline is not None:
            attempt.soft_due = now + max(ctx.soft_deadline - wall, 0)
            first = min(first, attempt.soft_due)
        self._limited.add(attempt)
        if self._timer is None or first < self._timer.when():
            self._arm(first)
        _busy_threads += 1  # from now until the loop sees it finish, abandoned or not
        self._busy += 1
        live = self._threads - self._excess
        if self._busy > live and live - self._stuck < self._concurrency:
            self._spawn()
        self._jobs.put(attempt)

    def resize(self, concurrency: int) -> None:
        """Grows or shrinks the threads to `concurrency` (SetConcurrency): new threads start
        for attempts already waiting for one; surplus threads finish their attempt and leave
        before taking another, so the attempts queued meanwhile wait for the new number."""
        with self._stuck_lock:
            self._concurrency = concurrency
            live = self._threads - self._stuck - self._excess
            surplus = max(live - concurrency, 0)
            self._excess += surplus - min(self._excess, max(concurrency - live, 0))
        for _ in range(surplus):  # wakes idle threads to look at _excess
            self._jobs.put(None)
        while self._threads - self._stuck - self._excess < min(concurrency, self._busy - self._stuck):
            self._spawn()

    def _spawn(self) -> None:
        self._threads += 1
        threading.Thread(target=self._work, name=f"conveyor-task_{self._threads}", daemon=True).start()

    def _work(self) -> None:
        """A pool thread: runs attempts until shutdown() sends None, or resize() retires it."""
        jobs, finished = self._jobs, self._finished
        while True:
            with self._stuck_lock:
                retire = self._excess > 0
                if retire:
                    self._excess -= 1
            if retire:
                with contextlib.suppress(RuntimeError):  # the loop is closed: the worker has stopped
                    self._loop.call_soon_threadsafe(self._retired)  # type: ignore[union-attr]
                return
            attempt = jobs.get()
            if attempt is None:
                if self._closing:
                    return
                continue  # resize() woke us to look at _excess
            with self._stuck_lock:
                attempt.started = True
                skip = attempt.abandoned  # handed back (or timed out) before a thread was free
            if not skip:
                attempt.context.run(attempt.run)  # type: ignore[union-attr]
            with self._stuck_lock:
                leave = attempt.stuck
                attempt.stuck = False  # from here on the loop counts this thread as gone (see _drain)
            finished.append(attempt)
            if not self._wakeup_pending:  # the loop has not been woken for earlier ones yet
                self._wakeup_pending = True
                try:
                    self._loop.call_soon_threadsafe(self._drain)  # type: ignore[union-attr]
                except RuntimeError:  # the loop is closed: the worker has stopped
                    return
            if leave:  # it was replaced when its attempt was abandoned
                self._loop.call_soon_threadsafe(self._left)  # type: ignore[union-attr]
                return

    def withdraw(self, attempt: SyncAttempt) -> bool:
        """Takes back an attempt no thread has started (so it can be handed back unrun)."""
        with self._stuck_lock:
            if attempt.started:
                return False
            attempt.abandoned = True
            return True

    def _retired(self) -> None:
        """On the loop: a thread retired by resize() ended."""
        self._threads -= 1

    def _left(self) -> None:
        """On the loop: an abandoned thread's handler returned and the thread ended."""
        self._stuck -= 1
        self._threads -= 1

    def _drain(self) -> None:
        """On the loop: hands every finished attempt to on_done."""
        global _busy_threads  # noqa: PLW0603 - touched only on the event loop
        self._wakeup_pending = False  # before popping: a later append schedules another drain
        finished = self._finished
        while finished:
            attempt = finished.popleft()
            _busy_threads -= 1
            self._busy -= 1
            self._limited.discard(attempt)
            if attempt.abandoned:
                continue
            if attempt.error is not None:  # what an asyncio task running the handler would do with it:
                if isinstance(attempt.error, (SystemExit, KeyboardInterrupt)):
                    raise attempt.error  # stop the worker
                log.error("task %s: handler raised %r; no outcome reported", attempt.task_id, attempt.error)
                continue
            self._on_done(attempt, attempt.ack)  # type: ignore[arg-type]
        self._after_drain()

    def _arm(self, when: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self._loop.call_at(when, self._check_limits)  # type: ignore[union-attr]

    def _check_limits(self) -> None:
        """The limits timer: flags soft limits, expires hard ones, re-arms for the next limit."""
        self._timer = None
        horizon = self._loop.time() + _TIMER_SLACK  # type: ignore[union-attr]
        first = None
        for attempt in list(self._limited):
            if attempt.abandoned:
                self._limited.discard(attempt)
                continue
            if attempt.ack is not None or attempt.error is not None:
                continue  # finished; _drain reports it
            if attempt.soft_due is not None and attempt.soft_due <= horizon:
                attempt.soft_due = None
                attempt.ctx._soft.set()
            if attempt.due <= horizon:
                self._expire(attempt)
                continue
            due = attempt.due if attempt.soft_due is None else min(attempt.due, attempt.soft_due)
            first = due if first is None else min(first, due)
        if first is not None:
            self._arm(first)

    def _expire(self, attempt: SyncAttempt) -> None:
        """The hard limit: a thread cannot be killed, so abandon it (and replace it), tell it
        to stop, report the limit."""
        attempt.abandoned = True
        with self._stuck_lock:
            if attempt.started and attempt.ack is None and attempt.error is None:
                attempt.stuck = True
                self._stuck += 1
        if attempt.stuck:
            self._spawn()
        self._limited.discard(attempt)
        ctx = attempt.ctx
        ctx._soft.set()
        ctx._cancel.set()
        ack = task_pb2.TaskAck(task_id=attempt.task_id, lease_token=attempt.lease_token)
        ack.failure.CopyFrom(_failure(
            TimeLimitExceeded("the attempt ran past its time limit; its thread was abandoned"), retry=True))
        self._on_done(attempt, ack)

    def shutdown(self) -> None:
        """Drops attempts still waiting for a thread and lets idle threads exit."""
        global _busy_threads  # noqa: PLW0603 - touched only on the event loop
        self._closing = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._limited.clear()
        try:
            while True:
                if self._jobs.get_nowait() is not None:
                    _busy_threads -= 1
                    self._busy -= 1
        except queue.Empty:
            pass
        for _ in range(self._threads):
            self._jobs.put(None)
