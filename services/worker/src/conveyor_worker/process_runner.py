"""The runner of plain functions in child processes (`--pool processes`): every core, and a
hard limit that really stops a task.

Each child (`child.py`) runs one attempt at a time; the runner keeps `slots` of them alive
(autoscale: between MIN and MAX, following the backlog) and sends each up to `depth` jobs
ahead (1 without prefetch, so a waiting task never queues behind a long one). Jobs and
results cross each child's pipe in batches. The hard limit, a cancel and a hand-back
terminate the child running the attempt (SIGTERM, SIGKILL after KILL_GRACE); a child that
dies on its own is WorkerLost. Either way its unstarted jobs go to another child and a fresh
child takes the slot. Children leave after `max_tasks` attempts or past `max_memory_kib`.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import multiprocessing
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

from conveyor import telemetry as t
from conveyor.v1 import task_pb2
from conveyor_worker import child as child_main
from conveyor_worker import outcomes
from conveyor_worker.config import PoolOptions
from conveyor_worker.limits import LimitTimer
from conveyor_worker.outcomes import Attempt
from conveyor_worker.runner import OnDone

log = logging.getLogger(__name__)

KILL_GRACE = 0.5
"""Seconds between SIGTERM and SIGKILL for a child being stopped."""
AUTOSCALE_TICK = 0.25
"""Seconds between the autoscaler's looks at the backlog."""
RESPAWN_MIN_DELAY, RESPAWN_MAX_DELAY = 0.1, 10.0
"""Pause before replacing a child that died before finishing any task, doubling each time."""


def default_start_method() -> str:
    return "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"


def _send(c: _Child, batch: list[Any]) -> None:
    """One write of a batch; a child that died meanwhile is seen by _exited, which requeues."""
    with contextlib.suppress(OSError):
        c.conn.send(batch)


class _Job:
    __slots__ = ("attempt", "carrier", "child", "seq")

    def __init__(self, attempt: Attempt, carrier: dict[str, str]) -> None:
        self.attempt, self.carrier = attempt, carrier
        self.child: _Child | None = None
        self.seq = 0


class _Child:
    def __init__(self, process: Any, conn: Connection, progress: Any) -> None:
        self.process, self.conn, self.progress = process, conn, progress
        self.jobs: dict[int, _Job] = {}
        """seq -> jobs sent and not answered, in the order sent (and run)."""
        self.given = 0
        self.stop_reason: str | None = None
        """Why the runner stopped it: "limit", "cancel" or "hand back" (None: it left or died)."""
        self.retiring = False
        """Takes no more jobs: it leaves when its last one is answered (or at once if idle)."""

    def running(self) -> int:
        """The seq of the job it runs now, 0 when between jobs."""
        started, finished = self.progress[child_main.STARTED], self.progress[child_main.FINISHED]
        return started if started > finished else 0


class ProcessRunner:
    queues = True

    def __init__(self, options: PoolOptions, slots: int, depth: int, on_done: OnDone,
                 after_batch: Callable[[], None], on_scale: Callable[[int], None]) -> None:
        self._options = options
        self._mp = multiprocessing.get_context(options.start_method or default_start_method())
        if self._mp.get_start_method() == "forkserver":  # the app is imported once, in the server
            self._mp.set_forkserver_preload([options.app_ref.partition(":")[0], "conveyor_worker.child"])
        self._slots = slots
        self._depth = depth
        self._on_done, self._after_batch, self._on_scale = on_done, after_batch, on_scale
        self._children: list[_Child] = []
        self._queue: collections.deque[_Job] = collections.deque()
        """Jobs waiting for room in a child, oldest first."""
        self._seq = 0
        self._limits = LimitTimer(self._soft_limit, self._hard_limit)
        self._dispatch_pending = False
        self._respawn_delay = RESPAWN_MIN_DELAY
        self._closed = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._autoscaler: asyncio.TimerHandle | None = None
        self._busy_since = time.monotonic()
        """When a child last had work it could not start at once, or all were busy (autoscale)."""

    # The runner interface.

    def open(self) -> None:
        """Starts the children (and the fork server, which imports the app) before the worker
        connects: a task never waits for them, nor the event loop for the first start."""
        self._loop = asyncio.get_running_loop()
        self._fill()
        if self._options.autoscale is not None:
            self._autoscaler = self._loop.call_later(AUTOSCALE_TICK, self._autoscale)

    def start(self, attempt: Attempt) -> None:
        carrier: dict[str, str] = {}
        if attempt.trace is not None:  # the span is current: the child's handler spans are its children
            t.inject(carrier)
        job = attempt.handle = _Job(attempt, carrier)
        self._queue.append(job)
        self._limits.watch(attempt)
        self._schedule_dispatch()

    def withdraw(self, attempt: Attempt) -> bool:
        job: _Job = attempt.handle
        if job.child is not None:
            return False
        with contextlib.suppress(ValueError):  # already reported (it could not start in time)
            self._queue.remove(job)
        self._limits.forget(attempt)
        attempt.abandoned = True
        return True

    def cancel(self, attempt: Attempt) -> None:
        """Terminates the child running it (Celery's revoke(terminate=True)); one that has not
        started in its child is skipped there. Either way it is reported CANCELLED."""
        self._stop(attempt, "cancel")

    def hand_back(self, attempt: Attempt) -> None:
        attempt.abandoned = True
        if not self.withdraw(attempt):
            self._stop(attempt, "hand back")

    def resize(self, slots: int) -> None:
        """Starts children up to `slots`; past it, idle children leave now and busy ones after
        their last job."""
        self._slots = slots
        if self._loop is not None:
            self._fill()
            self._schedule_dispatch()

    def close(self) -> None:
        """Stops every child: closing its pipe ends it at once, SIGKILL after KILL_GRACE."""
        self._closed = True
        self._limits.clear()
        if self._autoscaler is not None:
            self._autoscaler.cancel()
        children, self._children = self._children, []
        for c in children:
            self._unwatch(c)
            c.conn.close()
            c.process.terminate()
        deadline = time.monotonic() + KILL_GRACE
        for c in children:
            c.process.join(max(deadline - time.monotonic(), 0))
            if c.process.is_alive():
                c.process.kill()
                c.process.join(5)

    # Children.

    def _live(self) -> list[_Child]:
        return [c for c in self._children if not c.retiring]

    def _fill(self) -> None:
        """Brings the children taking work to the slots: starts or retires some."""
        if self._closed:
            return
        live = self._live()
        for _ in range(self._slots - len(live)):
            self._spawn()
        for c in sorted(live, key=lambda c: len(c.jobs))[:max(len(live) - self._slots, 0)]:
            self._retire(c)

    def _spawn(self) -> None:
        opts = self._options
        conn, child_conn = self._mp.Pipe()
        progress = self._mp.RawArray("q", 2)
        process = self._mp.Process(  # type: ignore[attr-defined]
            target=child_main.main, name="conveyor-child", daemon=True,
            args=(opts.app_ref, child_conn, progress, opts.max_tasks_per_child, opts.max_memory_per_child * 1024,
                  opts.app_tls, opts.app_token))
        process.start()
        child_conn.close()
        c = _Child(process, conn, progress)
        self._children.append(c)
        loop = self._loop
        assert loop is not None
        loop.add_reader(conn.fileno(), self._readable, c)
        loop.add_reader(process.sentinel, self._exited, c)

    def _retire(self, c: _Child) -> None:
        c.retiring = True
        if not c.jobs:
            c.process.terminate()  # idle: nothing to lose

    def _unwatch(self, c: _Child) -> None:
        loop = self._loop
        if loop is not None and not c.conn.closed:
            loop.remove_reader(c.conn.fileno())
        if loop is not None:
            loop.remove_reader(c.process.sentinel)

    def _kill(self, c: _Child, reason: str) -> None:
        if c.stop_reason is None:
            c.stop_reason = reason
            c.retiring = True
            c.process.terminate()
            self._loop.call_later(KILL_GRACE, self._kill_hard, c)  # type: ignore[union-attr]

    def _kill_hard(self, c: _Child) -> None:
        if c.process.is_alive():
            c.process.kill()

    # Jobs and results.

    def _schedule_dispatch(self) -> None:
        if not self._dispatch_pending:
            self._dispatch_pending = True
            self._loop.call_soon(self._dispatch)  # type: ignore[union-attr]

    def _dispatch(self) -> None:
        """Hands waiting jobs to the children with room, least loaded first: one send each. A
        child is refilled once half its `depth` is done, so jobs and results cross in batches
        (refilling one job per result would cost a write, a wake-up and a report per task)."""
        self._dispatch_pending = False
        queue = self._queue
        if not queue or self._closed:
            return
        depth, low = self._depth, self._depth // 2
        max_tasks = self._options.max_tasks_per_child
        for c in sorted(self._live(), key=lambda c: len(c.jobs)):
            if not queue or len(c.jobs) > low:
                break
            batch = []
            while queue and len(c.jobs) < depth and not (max_tasks and c.given >= max_tasks):
                job = queue.popleft()
                self._seq += 1
                job.child, job.seq = c, self._seq
                c.jobs[job.seq] = job
                c.given += 1
                job.attempt.started = True
                batch.append((job.seq, job.attempt.leased.SerializeToString(), job.carrier))
            if batch:
                _send(c, batch)
        if queue:
            self._busy_since = time.monotonic()

    def _readable(self, c: _Child) -> None:
        """Results from a child: each attempt is reported, the room refilled."""
        if not self._drain(c):
            self._loop.remove_reader(c.conn.fileno())  # type: ignore[union-attr]
        if c.retiring and not c.jobs and c.stop_reason is None:
            c.process.terminate()
        self._schedule_dispatch()
        self._after_batch()

    def _drain(self, c: _Child) -> bool:
        """Reports every result the child has written so far; False once its pipe is closed."""
        try:
            while c.conn.poll():
                self._results(c, c.conn.recv())
        except (EOFError, OSError):
            return False
        return True

    def _results(self, c: _Child, batch: list[tuple[int, bytes]]) -> None:
        self._respawn_delay = RESPAWN_MIN_DELAY  # children work
        for seq, data in batch:
            job = c.jobs.pop(seq, None)
            if job is not None:
                self._report(job.attempt, task_pb2.TaskAck.FromString(data))

    def _report(self, attempt: Attempt, ack: task_pb2.TaskAck) -> None:
        self._limits.forget(attempt)
        attempt.ack = ack
        if not attempt.abandoned:
            self._on_done(attempt, ack)

    def _exited(self, c: _Child) -> None:
        """A child ended: its last results are read; the job it died in is reported by why
        it ended; the ones it never started go back to the queue, first; another child
        takes the slot."""
        self._unwatch(c)
        self._drain(c)
        c.conn.close()
        c.process.join()
        if c in self._children:
            self._children.remove(c)
        started, finished = c.progress[child_main.STARTED], c.progress[child_main.FINISHED]
        unstarted = []
        for seq, job in c.jobs.items():
            attempt = job.attempt
            if seq > started:
                if attempt.ctx.cancelled:  # its cancel went to the child that died
                    self._report(attempt, outcomes.cancelled(attempt.task_id, attempt.lease_token))
                elif not attempt.abandoned:
                    job.child, job.seq = None, 0
                    unstarted.append(job)
            elif seq <= finished:  # it finished, but its result died with the child
                self._report(attempt, outcomes.raised(attempt, outcomes.WorkerLost(
                    "the child process ended before it sent this attempt's result")))
            elif c.stop_reason == "limit":
                self._report(attempt, outcomes.hard_limit(attempt, "its child process was terminated"))
            elif c.stop_reason == "cancel":
                self._report(attempt, outcomes.cancelled(attempt.task_id, attempt.lease_token))
            elif c.stop_reason is None:
                code = c.process.exitcode
                log.warning("child process %s running task %s died (exit code %s)", c.process.pid,
                            attempt.task_id, code)
                self._report(attempt, outcomes.raised(attempt, outcomes.WorkerLost(
                    f"the child process running the attempt died (exit code {code})")))
        self._queue.extendleft(reversed(unstarted))
        if self._closed:
            return
        if c.stop_reason is None and not c.retiring and not finished and c.process.exitcode:
            # It died before finishing anything (its app failed to import, say): start the next
            # one after a growing pause, not in a tight loop.
            log.error("child process %s exited with code %s before running a task; starting another in %.1fs",
                      c.process.pid, c.process.exitcode, self._respawn_delay)
            self._loop.call_later(self._respawn_delay, self._refill)  # type: ignore[union-attr]
            self._respawn_delay = min(self._respawn_delay * 2, RESPAWN_MAX_DELAY)
        else:
            self._refill()
        self._after_batch()

    def _refill(self) -> None:
        self._fill()
        self._schedule_dispatch()

    def _stop(self, attempt: Attempt, reason: str) -> None:
        job: _Job = attempt.handle
        c = job.child
        if c is None or job.seq not in c.jobs:
            return
        if c.running() == job.seq:
            self._kill(c, reason)
        else:  # not started there yet: the child skips it (and answers "cancelled")
            _send(c, [("cancel", job.seq)])

    # Time limits: the soft one is the child's own (SIGALRM); the hard one is ours.

    def _soft_limit(self, attempt: Attempt) -> None:
        attempt.ctx._soft.set()

    def _hard_limit(self, attempt: Attempt) -> None:
        job: _Job = attempt.handle
        c = job.child
        if c is None:  # still waiting for a child: it cannot start in time
            self._queue.remove(job)
            self._report(attempt, outcomes.hard_limit(attempt, "it did not start in time"))
            self._after_batch()
        elif c.running() == job.seq:
            self._kill(c, "limit")
        # else it has not started in its child, which reports the limit when it comes to it

    # Autoscale.

    def _autoscale(self) -> None:
        """Grows toward MAX while every child is busy or jobs wait; after `keepalive` seconds
        without that, shrinks toward MIN (the worker's slots and credit follow)."""
        maximum, minimum = self._options.autoscale  # type: ignore[misc]
        live = self._live()
        busy = sum(1 for c in live if c.jobs)
        now = time.monotonic()
        if self._queue or busy >= len(live):
            self._busy_since = now
            if self._slots < maximum:
                self._on_scale(min(maximum, self._slots + max(1, len(self._queue))))
        elif self._slots > minimum and now - self._busy_since >= self._options.autoscale_keepalive:
            self._on_scale(max(minimum, busy))
        self._autoscaler = self._loop.call_later(AUTOSCALE_TICK, self._autoscale)  # type: ignore[union-attr]
