"""The runner of plain functions in threads (the default pool).

A thread cannot be stopped: a cancel request sets `current_task().cancelled`, the soft limit
sets `current_task().soft_time_limit_exceeded`, and at the hard limit the attempt is reported
as TimeLimitExceeded and its thread abandoned (replaced; it leaves when its handler returns).
For a real hard limit, run CPU-bound or runaway-prone tasks in the process pool.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import contextvars
import logging
import queue
import threading
from collections.abc import Callable

from conveyor.context import bind
from conveyor_worker import outcomes
from conveyor_worker.limits import LimitTimer
from conveyor_worker.outcomes import Attempt
from conveyor_worker.runner import OnDone

log = logging.getLogger(__name__)

_busy_threads = 0


def busy_threads() -> int:
    """Handlers still running in their threads (abandoned ones included)."""
    return _busy_threads


def _call(attempt: Attempt) -> None:
    """In a pool thread, inside the attempt's context: runs the handler and builds the ack."""
    ctx = attempt.ctx
    bind(ctx)
    if ctx.cancelled:  # cancelled while it waited for a thread (prefetched): it never runs
        attempt.ack = outcomes.cancelled(attempt.task_id, attempt.lease_token)
        return
    try:
        value = attempt.definition.fn(*attempt.args, **attempt.kwargs)
    except Exception as exc:  # noqa: BLE001 - any handler error is the task's outcome
        attempt.ack = outcomes.raised(attempt, exc)
    except BaseException as exc:  # noqa: BLE001 - reported on the loop, like an escaping exception
        attempt.error = exc
    else:
        attempt.ack = outcomes.outcome(attempt, value)


class ThreadRunner:
    """Runs attempts in threads with fewer hand-offs than run_in_executor + asyncio.wait.

    The loop puts each attempt on a queue that idle threads take from, so every attempt
    starts as soon as a thread is free (a thread per running attempt; threads abandoned at
    their hard limit keep theirs and are replaced). A thread runs the handler in a copy of
    the loop's context taken at start (so the attempt's span, when tracing, is current) and
    builds the ack itself; finished attempts return to the loop in bulk: one wake-up carries
    every attempt finished since the last one.
    """

    queues = True

    def __init__(self, concurrency: int, on_done: OnDone, after_batch: Callable[[], None] = lambda: None) -> None:
        self._concurrency = concurrency
        self._on_done = on_done
        self._after_batch = after_batch
        """Called once a wake-up's finished attempts were handed to on_done (the worker sends
        their acks at once, not an event-loop iteration later)."""
        self._stuck = 0
        """Threads abandoned at a hard limit whose handler still runs (each has a replacement)."""
        self._stuck_lock = threading.Lock()
        """Orders a thread's "my handler returned" against the loop's "you are abandoned"."""
        self._jobs: queue.SimpleQueue[tuple[Attempt, contextvars.Context] | None] = queue.SimpleQueue()
        self._finished: collections.deque[Attempt] = collections.deque()
        self._wakeup_pending = False
        self._threads = 0
        self._excess = 0
        """Threads to retire after a shrink (resize): each leaves before taking its next
        attempt. Guarded by _stuck_lock (threads read it)."""
        self._closing = False
        self._busy = 0
        """Attempts handed to threads and not yet seen finished (abandoned ones included)."""
        self._limits = LimitTimer(self._soft_limit, self._expire)
        self._loop: asyncio.AbstractEventLoop | None = None

    def open(self) -> None:
        """Threads start on demand."""

    def start(self, attempt: Attempt) -> None:
        global _busy_threads  # noqa: PLW0603 - touched only on the event loop
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        self._limits.watch(attempt)
        _busy_threads += 1  # from now until the loop sees it finish, abandoned or not
        self._busy += 1
        live = self._threads - self._excess
        if self._busy > live and live - self._stuck < self._concurrency:
            self._spawn()
        self._jobs.put((attempt, contextvars.copy_context()))

    def resize(self, slots: int) -> None:
        """Grows or shrinks the threads to `slots` (SetConcurrency): new threads start for
        attempts already waiting for one; surplus threads finish their attempt and leave
        before taking another, so the attempts queued meanwhile wait for the new number."""
        with self._stuck_lock:
            self._concurrency = slots
            live = self._threads - self._stuck - self._excess
            surplus = max(live - slots, 0)
            self._excess += surplus - min(self._excess, max(slots - live, 0))
        for _ in range(surplus):  # wakes idle threads to look at _excess
            self._jobs.put(None)
        while self._threads - self._stuck - self._excess < min(slots, self._busy - self._stuck):
            self._spawn()

    def _spawn(self) -> None:
        self._threads += 1
        threading.Thread(target=self._work, name=f"conveyor-task_{self._threads}", daemon=True).start()

    def _work(self) -> None:
        """A pool thread: runs attempts until close() sends None, or resize() retires it."""
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
            job = jobs.get()
            if job is None:
                if self._closing:
                    return
                continue  # resize() woke us to look at _excess
            attempt, context = job
            with self._stuck_lock:
                attempt.started = True
                skip = attempt.abandoned  # handed back (or timed out) before a thread was free
            if not skip:
                context.run(_call, attempt)
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

    def withdraw(self, attempt: Attempt) -> bool:
        """Takes back an attempt no thread has started (so it can be handed back unrun)."""
        with self._stuck_lock:
            if attempt.started:
                return False
            attempt.abandoned = True
            return True

    def cancel(self, attempt: Attempt) -> None:
        """A thread cannot be stopped: the handler sees current_task().cancelled (set by the worker)."""

    def hand_back(self, attempt: Attempt) -> None:
        """Its thread runs on; its outcome is dropped."""
        attempt.abandoned = True

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
            self._limits.forget(attempt)
            if attempt.abandoned:
                continue
            if attempt.error is not None:  # what an asyncio task running the handler would do with it:
                if isinstance(attempt.error, (SystemExit, KeyboardInterrupt)):
                    raise attempt.error  # stop the worker
                log.error("task %s: handler raised %r; no outcome reported", attempt.task_id, attempt.error)
                continue
            self._on_done(attempt, attempt.ack)  # type: ignore[arg-type]
        self._after_batch()

    def _soft_limit(self, attempt: Attempt) -> None:
        attempt.ctx._soft.set()

    def _expire(self, attempt: Attempt) -> None:
        """The hard limit: a thread cannot be killed, so abandon it (and replace it), tell it
        to stop, report the limit."""
        attempt.abandoned = True
        with self._stuck_lock:
            if attempt.started and attempt.ack is None and attempt.error is None:
                attempt.stuck = True
                self._stuck += 1
        if attempt.stuck:
            self._spawn()
        ctx = attempt.ctx
        ctx._soft.set()
        ctx._cancel.set()
        self._on_done(attempt, outcomes.hard_limit(attempt, "its thread was abandoned"))
        self._after_batch()

    def close(self) -> None:
        """Drops attempts still waiting for a thread and lets idle threads exit."""
        global _busy_threads  # noqa: PLW0603 - touched only on the event loop
        self._closing = True
        self._limits.clear()
        try:
            while True:
                if self._jobs.get_nowait() is not None:
                    _busy_threads -= 1
                    self._busy -= 1
        except queue.Empty:
            pass
        for _ in range(self._threads):
            self._jobs.put(None)


