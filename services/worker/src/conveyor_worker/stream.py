"""The worker's stream to a scheduler: one at a time, reconnecting with backoff to the next
address when it breaks; the hello, heartbeats, and numbered reports of acks and credit.

Acks stay unconfirmed until the report's ReportDone; a new stream sends them again (acks are
idempotent by lease token), so a scheduler that died before recording them re-runs nothing.
What the scheduler asks of the worker (tasks, cancels, drains, slots) goes to `StreamOwner`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Protocol

import grpc

from conveyor.channels import open_aio_channel
from conveyor.errors import ChannelConfigError
from conveyor.v1 import task_pb2, worker_service_pb2, worker_service_pb2_grpc
from conveyor_worker.config import WorkerConfig

log = logging.getLogger(__name__)
CHANNEL_OPTIONS = [
    ("grpc.keepalive_time_ms", 10_000),
    ("grpc.keepalive_timeout_ms", 5_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.max_receive_message_length", 256 * 1024 * 1024),
    ("grpc.max_send_message_length", 256 * 1024 * 1024),
]


class StreamOwner(Protocol):
    """What the stream needs from the worker it carries."""

    def hello(self) -> worker_service_pb2.WorkerHello: ...
    def heartbeat(self) -> worker_service_pb2.WorkerHeartbeat: ...
    def leased(self, tasks: Sequence[task_pb2.LeasedTask]) -> None: ...
    def cancel(self, task_id: str) -> None: ...
    def lost(self, task_id: str) -> None: ...
    def drain(self) -> None: ...
    def request_shutdown(self) -> None: ...
    def set_concurrency(self, concurrency: int) -> None: ...


class Stream:
    def __init__(self, config: WorkerConfig, owner: StreamOwner, finished: Callable[[], bool]) -> None:
        self.config = config
        self._owner = owner
        self._finished = finished
        """True once there is nothing left for a stream to do: do not reconnect."""
        self.connected = False
        self._outbox: asyncio.Queue[worker_service_pb2.ConnectRequest | None] = asyncio.Queue()
        self._acks: list[task_pb2.TaskAck] = []
        self._unsent_report: worker_service_pb2.ConnectRequest | None = None
        """The last acks report in the outbox that the stream has not taken yet: later acks join it."""
        self._credit = 0
        self._flush_scheduled = False
        self._call: grpc.aio.StreamStreamCall | None = None
        self._heartbeat_interval = 10.0
        self._seq = 0
        """The number of the last report made (WorkerReport.seq), increasing across streams."""
        self._unconfirmed: dict[int, list[task_pb2.TaskAck]] = {}
        """report seq -> acks sent (or queued to send) in it that no ReportDone has confirmed:
        sent again on the next stream, since the scheduler that got them may have died first."""
        self._settled = asyncio.Event()
        """Set whenever every finished attempt's ack is confirmed recorded."""

    async def run(self) -> None:
        """Holds a stream until `finished()`; reconnects with backoff when it breaks."""
        backoff, attempt = 0.1, 0
        while not self._finished():
            target = self.config.targets[attempt % len(self.config.targets)]
            try:
                await self._session(target)
            except grpc.aio.AioRpcError as exc:
                log.warning("stream to %s ended: %s %s", target, exc.code().name, exc.details())
            except ChannelConfigError as exc:  # a TLS file unreadable mid-rotation, say: try again
                log.error("cannot open a channel to %s: %s", target, exc)
            finally:
                if self.connected:  # that stream worked: reconnect promptly
                    backoff = 0.1
                self.connected = False
            if self._finished():
                break
            attempt += 1
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self.config.reconnect_max_backoff)

    def all_confirmed(self) -> bool:
        return not self._acks and not self._unconfirmed

    async def _session(self, target: str) -> None:
        self._outbox = asyncio.Queue()
        self._unsent_report = None  # it was in the old outbox
        owner = self._owner
        async with open_aio_channel(target, tls=self.config.tls, token=self.config.token,
                                    options=CHANNEL_OPTIONS) as channel:
            stub = worker_service_pb2_grpc.WorkerServiceStub(channel)
            self._call = stub.Connect(self._requests())
            heartbeats: asyncio.Task[None] | None = None
            try:
                async for msg in self._call:
                    kind = msg.WhichOneof("kind")
                    if kind == "accepted":
                        self.connected = True
                        self._heartbeat_interval = msg.accepted.heartbeat_interval.ToMilliseconds() / 1000 or 10.0
                        heartbeats = asyncio.create_task(self._heartbeats())
                        log.info("worker %s connected to %s (%s)", self.config.worker_id, target,
                                 msg.accepted.scheduler_id)
                        for task_id in msg.accepted.lost:
                            owner.lost(task_id)
                        self._resend_unconfirmed()
                        self.flush()  # acks that finished while we were disconnected
                    elif kind == "report_done":
                        self._report_done(msg.report_done)
                    elif kind == "batch":
                        owner.leased(msg.batch.tasks)
                    elif kind == "cancel":
                        owner.cancel(msg.cancel.task_id)
                    elif kind == "drain" and msg.drain.stay_connected:
                        log.info("scheduler asked to drain and stay connected: %s", msg.drain.reason)
                        owner.drain()
                    elif kind == "drain":
                        log.info("scheduler asked to drain: %s", msg.drain.reason)
                        owner.request_shutdown()
                    elif kind == "set_concurrency":
                        owner.set_concurrency(msg.set_concurrency.concurrency)
            finally:
                if heartbeats:
                    heartbeats.cancel()
                self._outbox.put_nowait(None)
                self._call.cancel()

    async def _requests(self) -> AsyncIterator[worker_service_pb2.ConnectRequest]:
        outbox = self._outbox
        yield worker_service_pb2.ConnectRequest(hello=self._owner.hello())
        self._credit = 0  # the hello granted every free slot
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
            self.beat()

    def beat(self) -> None:
        """Sends a heartbeat now (also after a change the registry should show at once)."""
        if self.connected:
            self._outbox.put_nowait(worker_service_pb2.ConnectRequest(heartbeat=self._owner.heartbeat()))

    def _report_done(self, done: worker_service_pb2.ReportDone) -> None:
        """The scheduler recorded the acks of every report up to `done.seq` (it answers in order)."""
        for seq in [s for s in self._unconfirmed if s <= done.seq]:
            del self._unconfirmed[seq]
        for outcome in done.refused:
            log.info("ack for task %s not recorded: %s (the task is %s)", outcome.task_id,
                     task_pb2.AckStatus.Name(outcome.status), task_pb2.TaskState.Name(outcome.state))
        if self.all_confirmed():
            self._settled.set()

    def _resend_unconfirmed(self) -> None:
        """On a new stream: acks whose recording no scheduler confirmed go out again (acks are
        idempotent by lease token, so one that was recorded is only answered as stale)."""
        if self._unconfirmed:
            resend = [ack for acks in self._unconfirmed.values() for ack in acks]
            self._unconfirmed.clear()
            log.info("sending %d acks again: their recording was not confirmed", len(resend))
            self._acks[:0] = resend

    def ack(self, ack: task_pb2.TaskAck, credit: int) -> None:
        """Queues a finished attempt's ack, with the credit it returns, for the next report."""
        self._acks.append(ack)
        self._credit += credit
        self.schedule_flush()

    def grant(self, credit: int) -> None:
        """Queues credit for the next report (slots grew)."""
        self._credit += credit
        self.schedule_flush()

    def void_credit(self) -> None:
        self._credit = 0

    def schedule_flush(self) -> None:
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self.flush)

    def flush(self) -> None:
        """Sends the finished acks and returned credit in one report."""
        self._flush_scheduled = False
        if not self.connected or not (self._acks or self._credit):
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

    def send(self, report: worker_service_pb2.WorkerReport) -> None:
        self._outbox.put_nowait(worker_service_pb2.ConnectRequest(report=report))

    async def settle(self, timeout: float) -> None:
        """Waits until the scheduler confirmed every ack sent (a drain ends only then)."""
        self.flush()
        if self.all_confirmed():
            return
        self._settled.clear()
        try:
            await asyncio.wait_for(self._settled.wait(), timeout)
        except TimeoutError:
            log.warning("%d acks were not confirmed recorded; their leases lapse and the tasks run again",
                        len(self._acks) + sum(map(len, self._unconfirmed.values())))

    def half_close(self) -> None:
        """The scheduler ends the stream after our last report."""
        self._outbox.put_nowait(None)

    def cancel(self) -> None:
        if self._call:
            self._call.cancel()
