"""The worker's life: one stream at a time to a scheduler, credits, heartbeats, reconnects
and graceful shutdown.

Credit equals free slots plus free prefetch room: the hello grants them, and each finished
attempt returns one credit with its ack, so the scheduler never pushes more than the worker
can start at once, plus at most `prefetch` tasks that wait here for a slot (none by default).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import socket
from collections.abc import AsyncIterator

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from conveyor import App
from conveyor.channels import open_aio_channel
from conveyor.context import TaskContext
from conveyor.errors import ChannelConfigError
from conveyor.serialization import decode_call
from conveyor.v1 import task_pb2, worker_service_pb2, worker_service_pb2_grpc
from conveyor_worker import __version__, telemetry
from conveyor_worker.config import WorkerConfig
from conveyor_worker.executor import SyncAttempt, TaskThreads, context_for, execute
from conveyor_worker.telemetry import ContextThreadPool

log = logging.getLogger(__name__)
CHANNEL_OPTIONS = [
    ("grpc.keepalive_time_ms", 10_000),
    ("grpc.keepalive_timeout_ms", 5_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.max_receive_message_length", 256 * 1024 * 1024),
    ("grpc.max_send_message_length", 256 * 1024 * 1024),
]


class Worker:
    def __init__(self, app: App, config: WorkerConfig) -> None:
        self.app = app
        self.config = config
        self.concurrency = config.concurrency
        """Slots: attempts run at once (config.concurrency until a SetConcurrency)."""
        self.started_at = Timestamp()
        self.started_at.GetCurrentTime()
        self.succeeded = 0
        self.failed = 0
        """Attempts finished with a result / a failure since the process started (heartbeats)."""
        self.drained = False
        """Drained but connected (DrainWorker.stay_connected): no new work, for good."""
        self._withheld = 0
        """Credits still to withhold after a shrink: running attempts beyond the new slots."""
        # Headroom over concurrency: threads abandoned at their hard time limit keep running.
        self.pool = ContextThreadPool(max_workers=config.concurrency * 2, thread_name_prefix="conveyor-task")
        self.threads = TaskThreads(config.concurrency, self._sync_done, self._flush)
        """Plain-function handlers while telemetry is off (`pool` serves them when it is on)."""
        self.running: dict[str, tuple[str, asyncio.Task[None] | SyncAttempt]] = {}
        """task id -> (lease token, asyncio task or SyncAttempt) of attempts in progress."""
        self.waiting: collections.OrderedDict[str, task_pb2.LeasedTask] = collections.OrderedDict()
        """task id -> prefetched lease waiting for a free slot (at most config.prefetch)."""
        self.contexts: dict[str, TaskContext] = {}
        """task id -> the handler-visible context of attempts in progress."""
        self.stopping = False
        self.stopped = asyncio.Event()
        self._outbox: asyncio.Queue[worker_service_pb2.ConnectRequest | None] = asyncio.Queue()
        self._acks: list[task_pb2.TaskAck] = []
        self._unsent_report: worker_service_pb2.ConnectRequest | None = None
        """The last acks report in the outbox that the stream has not taken yet: later acks join it."""
        self._credit = 0
        self._flush_scheduled = False
        self._connected = False
        self._call: grpc.aio.StreamStreamCall | None = None
        self._heartbeat_interval = 10.0
        self._drained: asyncio.Future[None] | None = None
        """Set by shutdown(): resolved when the last attempt in progress finishes."""
        self._seq = 0
        """The number of the last report made (WorkerReport.seq), increasing across streams."""
        self._unconfirmed: dict[int, list[task_pb2.TaskAck]] = {}
        """report seq -> acks sent (or queued to send) in it that no ReportDone has confirmed:
        sent again on the next stream, since the scheduler that got them may have died first."""
        self._settled = asyncio.Event()
        """Set whenever every finished attempt's ack is confirmed recorded."""
        self._finished = False
        """shutdown() has half-closed (or given up on) the stream: do not reconnect."""
        self._shutdown: asyncio.Task[None] | None = None

    @property
    def free_slots(self) -> int:
        """Credit the worker can grant: free slots plus free prefetch room (negative after a
        shrink, while more attempts run than the new slots)."""
        return self.concurrency + self.config.prefetch - len(self.running) - len(self.waiting)

    @property
    def taking_work(self) -> bool:
        return not self.stopping and not self.drained

    async def run(self) -> None:
        """Holds a stream until stop(); reconnects with backoff when it breaks."""
        backoff, attempt = 0.1, 0
        while not self._finished_all():
            target = self.config.targets[attempt % len(self.config.targets)]
            try:
                await self._session(target)
            except grpc.aio.AioRpcError as exc:
                log.warning("stream to %s ended: %s %s", target, exc.code().name, exc.details())
            except ChannelConfigError as exc:  # a TLS file unreadable mid-rotation, say: try again
                log.error("cannot open a channel to %s: %s", target, exc)
            finally:
                if self._connected:  # that stream worked: reconnect promptly
                    backoff = 0.1
                self._connected = False
            if self._finished_all():
                break
            attempt += 1
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self.config.reconnect_max_backoff)
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.threads.shutdown()
        self.stopped.set()

    def _finished_all(self) -> bool:
        """Nothing left for a stream to do: stopped, nothing running, every ack confirmed."""
        return self._finished or (self.stopping and not self.running and self._all_confirmed())

    def _all_confirmed(self) -> bool:
        return not self._acks and not self._unconfirmed

    async def _session(self, target: str) -> None:
        self._outbox = asyncio.Queue()
        self._unsent_report = None  # it was in the old outbox
        async with open_aio_channel(target, tls=self.config.tls, token=self.config.token,
                                    options=CHANNEL_OPTIONS) as channel:
            stub = worker_service_pb2_grpc.WorkerServiceStub(channel)
            self._call = stub.Connect(self._requests())
            heartbeats: asyncio.Task[None] | None = None
            try:
                async for msg in self._call:
                    kind = msg.WhichOneof("kind")
                    if kind == "accepted":
                        self._connected = True
                        self._heartbeat_interval = msg.accepted.heartbeat_interval.ToMilliseconds() / 1000 or 10.0
                        heartbeats = asyncio.create_task(self._heartbeats())
                        log.info("worker %s connected to %s (%s)", self.config.worker_id, target,
                                 msg.accepted.scheduler_id)
                        for task_id in msg.accepted.lost:
                            self._lost(task_id)
                        self._resend_unconfirmed()
                        self._flush()  # acks that finished while we were disconnected
                    elif kind == "report_done":
                        self._report_done(msg.report_done)
                    elif kind == "batch":
                        direct = not telemetry.enabled()
                        for leased in msg.batch.tasks:
                            self._start(leased, direct, may_wait=True)
                    elif kind == "cancel":
                        self._cancel(msg.cancel.task_id)
                    elif kind == "drain" and msg.drain.stay_connected:
                        log.info("scheduler asked to drain and stay connected: %s", msg.drain.reason)
                        self.drain()
                    elif kind == "drain":
                        log.info("scheduler asked to drain: %s", msg.drain.reason)
                        if self._shutdown is None:
                            self._shutdown = asyncio.create_task(self.shutdown())
                    elif kind == "set_concurrency":
                        self.set_concurrency(msg.set_concurrency.concurrency)
            finally:
                if heartbeats:
                    heartbeats.cancel()
                self._outbox.put_nowait(None)
                self._call.cancel()

    async def _requests(self) -> AsyncIterator[worker_service_pb2.ConnectRequest]:
        outbox = self._outbox
        yield worker_service_pb2.ConnectRequest(hello=worker_service_pb2.WorkerHello(
            worker_id=self.config.worker_id, hostname=socket.gethostname(), pid=os.getpid(),
            queues=self.config.queues, concurrency=self.concurrency, task_names=sorted(self.app.tasks),
            credit=max(self.free_slots, 0) if self.taking_work else 0, sdk=f"conveyor-python/{__version__}",
            prefetch=self.config.prefetch, started_at=self.started_at, draining=self.drained,
            held=[*(worker_service_pb2.LeaseRef(task_id=task_id, lease_token=token)
                    for task_id, (token, _) in self.running.items()),
                  *(worker_service_pb2.LeaseRef(task_id=task_id, lease_token=leased.lease_token)
                    for task_id, leased in self.waiting.items())]))
        self._credit = 0  # the hello granted every free slot
        self._withheld = max(-self.free_slots, 0)  # more running than slots: the next finishes return none
        while True:
            msg = await outbox.get()
            if msg is None:
                return
            if msg is self._unsent_report:
                self._unsent_report = None
            yield msg

    async def _heartbeats(self) -> None:
        while True:
            await asyncio.sleep(self._heartbeat_interval)
            self._heartbeat()

    def _heartbeat(self) -> None:
        self._outbox.put_nowait(worker_service_pb2.ConnectRequest(heartbeat=worker_service_pb2.WorkerHeartbeat(
            active_task_ids=list(self.running), succeeded=self.succeeded, failed=self.failed,
            concurrency=self.concurrency)))

    def _start(self, leased: task_pb2.LeasedTask, direct: bool = False, may_wait: bool = False) -> None:
        """Starts one attempt. `direct` (telemetry off): a plain function whose payload decodes
        goes to TaskThreads, whose queue holds it while all `concurrency` threads are busy;
        everything else runs as an asyncio task, or, with `may_wait` and no free slot, waits
        in `waiting` (prefetched) until one frees."""
        task = leased.task
        task_id = task.id
        if not self.taking_work:  # arrived after we said we were draining: hand it straight back
            self._send(worker_service_pb2.WorkerReport(releases=[
                worker_service_pb2.LeaseRef(task_id=task_id, lease_token=leased.lease_token)]))
            return
        definition = self.app.tasks.get(task.name) if direct else None
        if may_wait and len(self.running) >= self.concurrency and (definition is None or definition.is_async):
            self.waiting[task_id] = leased
            return
        ctx = self.contexts[task_id] = context_for(leased)
        if direct and definition is not None and not definition.is_async:
            try:
                args, kwargs = decode_call(task.payload, task.content_type)
            except ValueError:
                pass  # execute() reports it
            else:
                attempt = SyncAttempt(task_id, leased.lease_token, ctx, definition, args, kwargs)
                self.running[task_id] = (leased.lease_token, attempt)
                self.threads.start(attempt)
                return
        runner = asyncio.create_task(self._run_one(leased, ctx), name=f"task:{task_id}")
        self.running[task_id] = (leased.lease_token, runner)

    def _report_done(self, done: worker_service_pb2.ReportDone) -> None:
        """The scheduler recorded the acks of every report up to `done.seq` (it answers in order)."""
        for seq in [s for s in self._unconfirmed if s <= done.seq]:
            del self._unconfirmed[seq]
        for outcome in done.refused:
            log.info("ack for task %s not recorded: %s (the task is %s)", outcome.task_id,
                     task_pb2.AckStatus.Name(outcome.status), task_pb2.TaskState.Name(outcome.state))
        if self._all_confirmed():
            self._settled.set()

    def _resend_unconfirmed(self) -> None:
        """On a new stream: acks whose recording no scheduler confirmed go out again (acks are
        idempotent by lease token, so one that was recorded is only answered as stale)."""
        if self._unconfirmed:
            resend = [ack for acks in self._unconfirmed.values() for ack in acks]
            self._unconfirmed.clear()
            log.info("sending %d acks again: their recording was not confirmed", len(resend))
            self._acks[:0] = resend

    def _lost(self, task_id: str) -> None:
        """A held lease the new stream could not adopt: its ack would be refused, so it stops."""
        log.warning("lease of task %s was lost while reconnecting (handed back, finished or leased anew); "
                    "stopping its attempt", task_id)
        self._stop(task_id, "lease lost", report=False)

    def _cancel(self, task_id: str) -> None:
        """A cancel request: an attempt that has not started is reported cancelled unrun."""
        self._stop(task_id, "cancel requested", report=True)

    def _stop(self, task_id: str, reason: str, *, report: bool) -> None:
        """Stops one attempt: a prefetched one, or a plain function still queued for a thread,
        never runs (with `report`, it is reported cancelled); an async handler is cancelled; a
        running plain function sees `current_task().cancelled`."""
        leased = self.waiting.pop(task_id, None)
        if leased is not None:
            if report:
                self._done(_cancelled(task_id, leased.lease_token))
            return
        ctx, held = self.contexts.get(task_id), self.running.get(task_id)
        if ctx is None or held is None:
            return
        ctx._cancel.set()
        token, runner = held
        if isinstance(runner, SyncAttempt) and self.threads.withdraw(runner):  # queued for a thread: never runs
            self._forget(task_id)
            if report:
                self._done(_cancelled(task_id, token))
            return
        definition = self.app.tasks.get(ctx.name)
        if definition is not None and definition.is_async:
            runner.cancel(reason)

    async def _run_one(self, leased: task_pb2.LeasedTask, ctx: TaskContext) -> None:
        try:
            ack = await telemetry.process(leased, execute(self.app, leased, self.pool, ctx))
        except asyncio.CancelledError:
            return  # handed back at shutdown
        finally:
            self._forget(leased.task.id)
        self._done(ack)

    def _sync_done(self, attempt: SyncAttempt, ack: task_pb2.TaskAck) -> None:
        self._forget(attempt.task_id)
        self._done(ack)

    def _forget(self, task_id: str) -> None:
        self.running.pop(task_id, None)
        self.contexts.pop(task_id, None)
        self._start_waiting()
        if self._drained is not None and not self.running and not self._drained.done():
            self._drained.set_result(None)

    def _start_waiting(self) -> None:
        """Starts prefetched attempts in the slots that are free (after one finished, or grew)."""
        while self.waiting and len(self.running) < self.concurrency and self.taking_work:
            self._start(self.waiting.popitem(last=False)[1], not telemetry.enabled())

    def _done(self, ack: task_pb2.TaskAck) -> None:
        """Queues a finished attempt's ack and its credit for the next report."""
        self._acks.append(ack)
        outcome = ack.WhichOneof("outcome")
        if outcome == "result":
            self.succeeded += 1
        elif outcome == "failure":
            self.failed += 1
        if self.taking_work and self._withheld:  # after a shrink: this slot is gone
            self._withheld -= 1
        elif self.taking_work:
            self._credit += 1
        self._schedule_flush()

    def _schedule_flush(self) -> None:
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        """Sends the finished acks and returned credit in one report."""
        self._flush_scheduled = False
        if not self._connected or not (self._acks or self._credit):
            return
        request = self._unsent_report
        fresh = request is None
        if request is None:  # filled in place: WorkerReport(acks=...) would copy twice
            request = self._unsent_report = worker_service_pb2.ConnectRequest()
            self._seq += 1
            request.report.seq = self._seq
        if self._acks:
            self._settled.clear()
            request.report.acks.extend(self._acks)
            self._unconfirmed.setdefault(request.report.seq, []).extend(self._acks)
        request.report.credit += self._credit
        self._acks, self._credit = [], 0
        if fresh:
            self._outbox.put_nowait(request)

    def _send(self, report: worker_service_pb2.WorkerReport) -> None:
        self._outbox.put_nowait(worker_service_pb2.ConnectRequest(report=report))

    def stop(self) -> None:
        """Take no new work; in-flight attempts get the grace period (see shutdown) and
        prefetched ones are handed back at once."""
        if not self.stopping:
            was_taking = self.taking_work
            self.stopping = True
            if was_taking:
                self._take_no_more()

    def drain(self) -> None:
        """Take no new work but stay connected (DrainWorker.stay_connected): in-flight
        attempts finish and are acked, prefetched ones are handed back at once."""
        if self.taking_work:
            self.drained = True
            self._take_no_more()

    def _take_no_more(self) -> None:
        """Voids the credit and hands back what has not started, in one draining report."""
        self._credit = self._withheld = 0
        releases = [worker_service_pb2.LeaseRef(task_id=task_id, lease_token=leased.lease_token)
                    for task_id, leased in self.waiting.items()]
        self.waiting.clear()
        # Prefetched plain-function attempts queued for a thread, newest first, down to the
        # slots (those within the slots were due to start now: they finish).
        for task_id, (token, runner) in reversed(list(self.running.items())):
            if len(self.running) <= self.concurrency:
                break
            if isinstance(runner, SyncAttempt) and self.threads.withdraw(runner):
                releases.append(worker_service_pb2.LeaseRef(task_id=task_id, lease_token=token))
                self._forget(task_id)
        self._send(worker_service_pb2.WorkerReport(draining=True, releases=releases))

    def set_concurrency(self, concurrency: int) -> None:
        """Grows or shrinks the slots (SetConcurrency). Growing starts prefetched tasks in the
        new slots and grants the new credit; shrinking lets running attempts finish and
        withholds the credit of as many as the slots shrank by."""
        if not 1 <= concurrency <= 10_000 or concurrency == self.concurrency:
            return
        old, self.concurrency = self.concurrency, concurrency
        log.info("concurrency %d -> %d", old, concurrency)
        self.threads.resize(concurrency)
        # The telemetry path's pool (ThreadPoolExecutor starts threads up to _max_workers on demand).
        self.pool._max_workers = max(self.pool._max_workers, concurrency * 2)
        if concurrency < old:
            self._withheld += old - concurrency
        else:
            grown = concurrency - old
            repaid = min(self._withheld, grown)
            self._withheld -= repaid
            if self.taking_work:
                self._credit += grown - repaid
            self._start_waiting()
            self._schedule_flush()
        if self._connected:
            self._heartbeat()  # the registry shows the new slots now

    async def shutdown(self) -> None:
        """Graceful stop: finish within the grace period, hand back the rest, close."""
        self.stop()
        log.info("draining: %d tasks in flight, grace period %.0fs", len(self.running), self.config.grace_period)
        if self.running:
            self._drained = asyncio.get_running_loop().create_future()
            await asyncio.wait({self._drained}, timeout=self.config.grace_period)
        leftovers = dict(self.running)
        if leftovers:
            log.warning("handing back %d unfinished tasks", len(leftovers))
            self._send(worker_service_pb2.WorkerReport(releases=[
                worker_service_pb2.LeaseRef(task_id=tid, lease_token=token) for tid, (token, _) in leftovers.items()]))
            for task_id, (_, runner) in leftovers.items():
                runner.cancel()
                if isinstance(runner, SyncAttempt):  # no asyncio task to forget it
                    self.contexts.pop(task_id, None)
            self.running.clear()
        self._flush()
        if not self._all_confirmed():  # a drain ends only once the scheduler has recorded every outcome
            self._settled.clear()
            try:
                await asyncio.wait_for(self._settled.wait(), 10)
            except TimeoutError:
                log.warning("%d acks were not confirmed recorded; their leases lapse and the tasks run again",
                            len(self._acks) + sum(map(len, self._unconfirmed.values())))
        self._finished = True
        self._outbox.put_nowait(None)  # half-close: the scheduler ends the stream after our last report
        try:
            await asyncio.wait_for(self.stopped.wait(), 10)
        except TimeoutError:
            if self._call:
                self._call.cancel()


def _cancelled(task_id: str, lease_token: str) -> task_pb2.TaskAck:
    """The ack of an attempt cancelled before it started."""
    ack = task_pb2.TaskAck(task_id=task_id, lease_token=lease_token)
    ack.cancelled.reason = "cancel requested"
    return ack
