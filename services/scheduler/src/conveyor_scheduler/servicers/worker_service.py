"""conveyor.v1.WorkerService.Connect: one bidirectional stream per worker process."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Sequence

import grpc
from google.protobuf.duration_pb2 import Duration
from redis.exceptions import RedisError

from conveyor.v1 import task_pb2, worker_service_pb2
from conveyor_scheduler.completion import Completion
from conveyor_scheduler.config import SchedulerConfig
from conveyor_scheduler.dispatch import Dispatcher
from conveyor_scheduler.errors import InvalidArgument
from conveyor_scheduler.grpc_glue import Malformed
from conveyor_scheduler.registry import WorkerRegistry
from conveyor_scheduler.sessions import WorkerSession
from conveyor_scheduler.store import Store
from conveyor_scheduler.task_lookup import TaskLookup
from conveyor_scheduler.validation import check_name, check_queue, check_task_id, check_task_names
from conveyor_scheduler.wakes import Wakes

log = logging.getLogger(__name__)
MAX_CREDIT = 10_000


class WorkerService:
    def __init__(self, *, config: SchedulerConfig, scheduler_id: str, completion: Completion, dispatcher: Dispatcher,
                 registry: WorkerRegistry, lookup: TaskLookup, store: Store, wakes: Wakes) -> None:
        self.config = config
        """The lease TTL and heartbeat interval the worker is told."""
        self.scheduler_id = scheduler_id
        self.completion = completion
        """The acks of a report."""
        self.dispatcher = dispatcher
        """Pushes leases on the stream, within its credit."""
        self.registry = registry
        self.lookup = lookup
        self.store = store
        self.wakes = wakes
        """Told when a hand-back makes tasks ready again."""

    async def Connect(self, requests: AsyncIterator[worker_service_pb2.ConnectRequest],
                      context: grpc.aio.ServicerContext) -> AsyncIterator[worker_service_pb2.ConnectResponse]:
        try:
            first = await anext(requests)
        except StopAsyncIteration:
            return
        session = self._hello(first)
        lost = await self._adopt(session, first.hello.held)
        await self.registry.join(session)
        cfg = self.config
        accepted = worker_service_pb2.ConnectAccepted(
            scheduler_id=self.scheduler_id,
            heartbeat_interval=Duration(seconds=cfg.heartbeat_interval_ms // 1000,
                                        nanos=cfg.heartbeat_interval_ms % 1000 * 1_000_000),
            lease_ttl=Duration(seconds=cfg.lease_ttl_ms // 1000, nanos=cfg.lease_ttl_ms % 1000 * 1_000_000),
            lost=lost)
        yield worker_service_pb2.ConnectResponse(accepted=accepted)
        reader = asyncio.create_task(self._read(requests, session))
        try:
            await self.dispatcher.attach(session)
            log.info("worker %s connected (queues %s, credit %d)", session.worker_id, ",".join(session.queues),
                     session.credit)
            while True:
                msg = await session.next_message()
                if msg is None:
                    break
                yield msg
        finally:
            self.dispatcher.detach(session)
            reader.cancel()
            # The call may be cancelled again while we clean up: the hand-back runs in its own
            # task, shielded, so a broken stream never leaves leases behind.
            await asyncio.shield(self._close(session, reader))
        if reader.done() and not reader.cancelled() and reader.exception():
            raise reader.exception()  # type: ignore[misc]

    def _hello(self, msg: worker_service_pb2.ConnectRequest) -> WorkerSession:
        if isinstance(msg, Malformed):
            raise InvalidArgument("hello", msg.message)
        if msg.WhichOneof("kind") != "hello":
            raise InvalidArgument("hello", "the first message on the stream must be a hello")
        h = msg.hello
        if not 1 <= len(h.queues) <= 32:
            raise InvalidArgument("hello.queues", "name 1 to 32 queues")
        if h.credit > MAX_CREDIT:
            raise InvalidArgument("hello.credit", f"must be at most {MAX_CREDIT}")
        if len(h.held) > MAX_CREDIT:
            raise InvalidArgument("hello.held", f"must hold at most {MAX_CREDIT} leases")
        if h.draining and h.credit:
            raise InvalidArgument("hello.credit", "must be 0 when hello.draining is set")
        return WorkerSession(
            worker_id=check_name(h.worker_id, "hello.worker_id"),
            queues=tuple(dict.fromkeys(check_queue(q, f"hello.queues[{i}]") for i, q in enumerate(h.queues))),
            hostname=h.hostname[:200], concurrency=h.concurrency,
            task_names=check_task_names(h.task_names, "hello.task_names"), credit=h.credit,
            pid=h.pid, sdk=h.sdk[:200], prefetch=h.prefetch, draining=h.draining,
            started_ms=h.started_at.ToMilliseconds() if h.HasField("started_at") else 0)

    async def _adopt(self, session: WorkerSession, held: Sequence[worker_service_pb2.LeaseRef]) -> list[str]:
        """Makes this stream the one owner of the leases its worker still runs from an earlier
        stream; returns the ids of those that are no longer current (lost)."""
        by_queue: dict[str, list[tuple[str, str]]] = {}
        for i, ref in enumerate(held):
            queue = await self.lookup.queue_of(ref.task_id, f"hello.held[{i}].task_id")
            if not 1 <= len(ref.lease_token) <= 64:
                raise InvalidArgument(f"hello.held[{i}].lease_token", "must be 1 to 64 characters")
            by_queue.setdefault(queue, []).append((ref.task_id, ref.lease_token))
        lost = []
        for queue, leases in by_queue.items():
            adopted = await self.store.adopt(queue, leases, session.owner, session.worker_id,
                                                  self.config.lease_ttl_ms)
            for (task_id, token), ok in zip(leases, adopted, strict=True):
                if ok:
                    session.leases[task_id] = (queue, token)
                else:
                    lost.append(task_id)
        if lost:
            log.info("worker %s: %d held leases are no longer current (handed back, finished or leased anew)",
                     session.worker_id, len(lost))
        return lost

    async def _read(self, requests: AsyncIterator[worker_service_pb2.ConnectRequest], session: WorkerSession) -> None:
        """Handles the worker's messages; ends the stream (outbox None) when they end."""
        try:
            async for msg in requests:
                if isinstance(msg, Malformed):
                    raise InvalidArgument("message", msg.message)
                kind = msg.WhichOneof("kind")
                if kind == "report":
                    await self._report(session, msg.report)
                elif kind == "heartbeat":
                    await self._heartbeat(session, msg.heartbeat)
                else:
                    raise InvalidArgument(kind or "kind", "only the first message may be a hello")
        finally:
            session.outbox.put_nowait(None)

    async def _report(self, session: WorkerSession, report: worker_service_pb2.WorkerReport) -> None:
        # A lease is forgotten only once its ack or release is recorded: if this is cancelled
        # (the stream broke) the lease is still held and _close hands it back; a lease whose
        # ack did land has a stale token by then, and release.lua ignores it.
        if report.acks:
            outcomes = await self.completion.ack(report.acks, "report.acks")
            for ack in report.acks:
                session.leases.pop(ack.task_id, None)
            refused = [o for o in outcomes if o.status != task_pb2.ACK_STATUS_ACCEPTED]
            for outcome in refused:
                log.info("worker %s: ack for %s refused (%s)", session.worker_id, outcome.task_id,
                         task_pb2.AckStatus.Name(outcome.status))
            if report.seq or refused:  # the worker learns its acks are recorded (or why not)
                session.report_done(report.seq, refused)
        if report.draining:  # before the hand-back's awaits: nothing may be leased to it meanwhile
            session.stop_work()
            await self.registry.beat(session)
        if report.releases:
            by_queue: dict[str, list[tuple[str, str]]] = {}
            for ref in report.releases:
                held = session.leases.get(ref.task_id)
                if held:
                    by_queue.setdefault(held[0], []).append((ref.task_id, ref.lease_token))
            for queue, leases in by_queue.items():
                released = await self.store.release(queue, leases, session.owner)
                for task_id, _ in leases:
                    session.leases.pop(task_id, None)
                if released:
                    self.wakes.ready(queue)
                    await self.wakes.publish(queue)
        if report.credit and not session.draining:
            session.credit = min(session.credit + report.credit, MAX_CREDIT)
            self.dispatcher.credit_changed(session)

    async def _heartbeat(self, session: WorkerSession, beat: worker_service_pb2.WorkerHeartbeat) -> None:
        if len(beat.active_task_ids) > MAX_CREDIT:
            raise InvalidArgument("heartbeat.active_task_ids", f"must name at most {MAX_CREDIT} tasks")
        for i, task_id in enumerate(beat.active_task_ids):
            check_task_id(task_id, f"heartbeat.active_task_ids[{i}]")
        ttl = self.config.lease_ttl_ms
        for queue, leases in session.leases_by_queue().items():
            expiries = await self.store.extend(queue, [(tid, tok, ttl) for tid, tok in leases], session.owner)
            for (task_id, _), expiry in zip(leases, expiries, strict=True):
                if expiry < 0:
                    session.leases.pop(task_id, None)
        session.active_task_ids = tuple(beat.active_task_ids)
        session.succeeded, session.failed = beat.succeeded, beat.failed
        if beat.concurrency:
            session.concurrency = beat.concurrency
        await self.registry.beat(session)  # what AdminService.ListWorkers shows

    async def _close(self, session: WorkerSession, reader: asyncio.Task[None]) -> None:
        await asyncio.gather(reader, return_exceptions=True)
        try:
            await self.registry.leave(session)
        except Exception as exc:  # noqa: BLE001 - the entry lapses after the lease TTL
            log.info("could not remove worker %s from the registry: %s", session.worker_id, exc)
        held = len(session.leases)
        failure = reader.exception() if reader.done() and not reader.cancelled() else None
        if held and isinstance(failure, RedisError):
            # Our outage, not the worker's: it reconnects and adopts them (WorkerHello.held).
            # Handed back now, just as Redis returns, they would run twice; if the worker does
            # not come back they lapse after the lease TTL and the reaper returns them.
            log.info("worker %s disconnected on a Redis error; its %d leases wait for it to reconnect",
                     session.worker_id, held)
            return
        released = await self._release_all(session)
        log.info("worker %s disconnected; %d of %d leases handed back", session.worker_id, released, held)

    async def _release_all(self, session: WorkerSession) -> int:
        """Returns the leases of a closed stream to their queues; the number released."""
        released = 0
        for queue, leases in session.leases_by_queue().items():
            try:
                count = await self.store.release(queue, leases, session.owner)
            except Exception as exc:  # noqa: BLE001 - the reaper returns them when their lease lapses
                log.warning("could not hand back %d leases of %s: %s", len(leases), session.worker_id, exc)
                continue
            released += count
            if count:
                self.wakes.ready(queue)
                with contextlib.suppress(Exception):
                    await self.wakes.publish(queue)
        session.leases.clear()
        return released
