"""A child process of the process pool: imports the app once, then runs attempts one at a time.

Messages go both ways in batches (one `Connection.send` of a list): the parent sends jobs
`(seq, LeasedTask bytes, trace carrier)` and `("cancel", seq)`; the child answers with
`(seq, TaskAck bytes)`. A reader thread takes the parent's batches as they come (so a send
never waits for a long task to end) and ends the process when the parent's end closes; with
PR_SET_PDEATHSIG the kernel ends it too if the parent dies, even mid-computation. The child
writes the seq of the job it starts and of the one it finished into shared memory, which
tells the parent, when the child dies, which job it died in and which never started.

Time limits: the soft limit is SIGALRM (setitimer), whose handler raises
SoftTimeLimitExceeded in the handler's frame; the hard limit is the parent's: it terminates
the child. After each job the child leaves (its results sent, exit status 0) once it reached
`max_tasks`, or its memory passed `max_memory_kib`: the parent starts another.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import queue
import signal
import sys
import threading
import time
from collections.abc import MutableSequence
from multiprocessing.connection import Connection
from types import FrameType
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace

from conveyor import App
from conveyor import telemetry as t
from conveyor.channels import TLSConfig
from conveyor.context import TaskContext, bind
from conveyor.errors import SoftTimeLimitExceeded
from conveyor.v1 import task_pb2
from conveyor_worker import outcomes
from conveyor_worker.config import LOG_FORMAT, LOG_LEVEL_ENV
from conveyor_worker.loader import load_app

STARTED, FINISHED = 0, 1
"""Indexes of the shared progress array: the seq of the last job started / finished."""
FLUSH_AFTER = 0.002
"""Results of short jobs wait at most this long for more to share their write."""
_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """Linux: the kernel sends SIGKILL when the parent dies (no orphan, even while the handler
    runs in C); elsewhere the reader thread's EOF is the only watch."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


class _Runner:
    def __init__(self, app: App, conn: Connection, progress: MutableSequence[int], max_tasks: int,
                 max_memory_kib: int) -> None:
        self.app, self.conn, self.progress = app, conn, progress
        self.max_tasks, self.max_memory_kib = max_tasks, max_memory_kib
        self.inbox: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.cancelled: set[int] = set()
        self.current: tuple[int, TaskContext] | None = None
        """The job running now and its context (the reader thread flags a late cancel on it)."""
        self.in_handler = False
        self.lock = threading.Lock()

    def read(self) -> None:
        """The reader thread: moves the parent's batches into the inbox; EOF ends the process."""
        try:
            while True:
                for msg in self.conn.recv():
                    if msg[0] == "cancel":
                        with self.lock:
                            current = self.current
                            if current is not None and current[0] == msg[1]:
                                current[1]._cancel.set()  # started meanwhile: the handler may see it
                            else:
                                self.cancelled.add(msg[1])
                    else:
                        self.inbox.put(msg)
        except (EOFError, OSError):
            os._exit(0)

    def soft_limit(self, signum: int, frame: FrameType | None) -> None:
        current = self.current
        if current is not None:
            current[1]._soft.set()
            if self.in_handler:
                raise SoftTimeLimitExceeded("the attempt ran past its soft time limit")

    def run(self) -> None:
        done, first_pending = 0, 0.0
        pending: list[tuple[int, bytes]] = []
        while True:
            if pending and (self.inbox.empty() or time.monotonic() - first_pending > FLUSH_AFTER):
                self.conn.send(pending)
                pending = []
            seq, data, carrier = self.inbox.get()
            pending.append((seq, self.job(seq, data, carrier).SerializeToString()))
            if len(pending) == 1:
                first_pending = time.monotonic()
            done += 1
            if (self.max_tasks and done >= self.max_tasks) or (self.max_memory_kib and rss_kib() > self.max_memory_kib):
                self.conn.send(pending)
                return  # unstarted jobs go back to the parent's queue when it sees us leave

    def job(self, seq: int, data: bytes, carrier: dict[str, str]) -> task_pb2.TaskAck:
        leased = task_pb2.LeasedTask.FromString(data)
        ctx = outcomes.context_for(leased)
        progress = self.progress
        with self.lock:
            progress[STARTED] = seq
            self.current = (seq, ctx)
            was_cancelled = seq in self.cancelled
            self.cancelled.discard(seq)
        try:
            if was_cancelled:
                return outcomes.cancelled(ctx.id, leased.lease_token)
            attempt = outcomes.prepare(self.app, leased, ctx)
            if not isinstance(attempt, outcomes.Attempt):
                return attempt
            if ctx.deadline <= time.time():  # it waited here past its hard limit
                return outcomes.hard_limit(attempt, "it did not start in time")
            return self.call(attempt, carrier)
        finally:
            with self.lock:
                self.current = None
                progress[FINISHED] = seq

    def call(self, attempt: outcomes.Attempt, carrier: dict[str, str]) -> task_pb2.TaskAck:
        ctx = attempt.ctx
        token = otel_context.attach(t.extract(carrier)) if carrier else None
        bind(ctx)
        if ctx.soft_deadline is not None:
            signal.setitimer(signal.ITIMER_REAL, max(ctx.soft_deadline - time.time(), 0.001))
        try:
            self.in_handler = True
            try:
                value = attempt.definition.fn(*attempt.args, **attempt.kwargs)
            finally:
                self.in_handler = False
                if ctx.soft_deadline is not None:
                    signal.setitimer(signal.ITIMER_REAL, 0)
        except Exception as exc:  # noqa: BLE001 - any handler error is the task's outcome
            return outcomes.raised(attempt, exc)
        except BaseException as exc:  # noqa: BLE001 - SystemExit and the like: the child is lost
            return outcomes.raised(attempt, outcomes.WorkerLost(f"the handler raised {exc!r}"))
        finally:
            if token is not None:
                otel_context.detach(token)
        return outcomes.outcome(attempt, value)


def rss_kib() -> int:
    """This process's resident memory (Linux /proc; elsewhere the peak, from getrusage)."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024
    except OSError:
        import resource  # noqa: PLC0415

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def main(app_ref: str, conn: Connection, progress: MutableSequence[int], max_tasks: int,
         max_memory_kib: int, app_tls: TLSConfig | None = None, app_token: str | None = None) -> None:
    """The child's entry point (multiprocessing's target). `app_tls`/`app_token`: the worker's
    command-line --tls-*/--token, for the app's own clients (tasks that submit tasks)."""
    die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the worker decides
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if not logging.getLogger().handlers:  # spawn/forkserver: a fresh process logs as its worker does
        logging.basicConfig(level=os.environ.get(LOG_LEVEL_ENV, "WARNING"), format=LOG_FORMAT)
    if t.tracer() is None:  # spawn/forkserver: a fresh process; fork inherits the worker's provider
        os.environ["OTEL_METRICS_EXPORTER"] = "none"  # the worker counts attempts; spans only
        t.configure_from_env("conveyor-worker")
    app = load_app(app_ref)
    app.set_security(tls=app_tls, token=app_token)
    runner = _Runner(app, conn, progress, max_tasks, max_memory_kib)
    signal.signal(signal.SIGALRM, runner.soft_limit)
    threading.Thread(target=runner.read, name="conveyor-child-reader", daemon=True).start()
    try:
        runner.run()
    finally:
        provider = trace.get_tracer_provider()
        flush = getattr(provider, "force_flush", None)
        if flush is not None:
            flush(5_000)
