"""Dispatch: hands ready tasks to this replica's connected workers, within their credit.

One loop per queue. It claims for workers with credit, round robin, and sleeps on the
queue's Signal when the queue is empty or nobody has credit; submits (local, or from
other replicas via Redis pub/sub), returned leases, promotions and new credit wake it.
There is no polling on this path. A queue whose last claim came back short is known
empty until something says tasks may be ready (`wake`), so returned credit alone does
not cost a claim; the reaper's periodic `sweep` (a probe of the ready lists) bounds any
missed wake-up.

Submits also offer this replica's workers for the sync-match fast path (`offers`):
credit is reserved before the store call and settled after it (`settle`). Workers without
a stream claim for themselves (`poll`, TaskService.Poll), woken by the same signals.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence

from redis.exceptions import RedisError

from conveyor.v1 import task_pb2, worker_service_pb2
from conveyor_scheduler.background import Background
from conveyor_scheduler.ids import created_ms
from conveyor_scheduler.records import set_duration_ms, set_ms, to_leased
from conveyor_scheduler.sessions import WorkerSession
from conveyor_scheduler.signals import Signal, wait_any
from conveyor_scheduler.store import Match, Store, Submitted
from conveyor_scheduler.task_events import TaskEvents
from conveyor_scheduler.validation import JSON_TYPE, NewTask

log = logging.getLogger(__name__)


async def _nothing(queue: str) -> None:
    return None


class QueueDispatch:
    """Dispatch state of one queue on this replica."""

    def __init__(self, queue: str) -> None:
        self.queue = queue
        self.signal = Signal()
        self.sessions: list[WorkerSession] = []
        self.next = 0
        self.task: asyncio.Task[None] | None = None
        self.maybe_ready = True
        """False once a claim came back short, until a wake says tasks may be ready."""
        self.ready_gen = 0
        """Counts wakes, so a wake that lands during a claim is never lost."""
        self.rounds_started = 0
        self.rounds_done = Signal()
        """Its gen counts dispatch rounds finished (failed ones too)."""


class Dispatcher:
    def __init__(self, store: Store, *, lease_ttl_ms: int, batch: int, events: TaskEvents,
                 queue_rates: dict[str, str] | None = None) -> None:
        self.store = store
        self.events = events
        """Told of every lease handed out (task_events: leased)."""
        self.lease_ttl_ms = lease_ttl_ms
        self.batch = batch
        self.queue_rates = queue_rates or {}
        self.on_reserved: Callable[[str, int], None] = lambda queue, due_ms: None
        """Called with the earliest start a claim reserved for rate-limited tasks."""
        self.on_parked: Callable[[str, list[str]], None] = lambda queue, names: None
        """Called with the task names a claim parked: the worker it claimed for does not run them."""
        self.on_serving: Callable[[str], Awaitable[None]] = _nothing
        """Awaited before a queue gets a worker's stream or a poll here: the event bus follows it, so
        its wake-ups and cancels reach this replica (bus.py)."""
        self._queues: dict[str, QueueDispatch] = {}
        self._sessions: dict[str, WorkerSession] = {}
        self._background = Background()

    def queue(self, name: str) -> QueueDispatch:
        qd = self._queues.get(name)
        if qd is None:
            qd = self._queues[name] = QueueDispatch(name)
        return qd

    def wake(self, queue: str) -> None:
        """Tasks of `queue` may be ready."""
        qd = self._queues.get(queue)
        if qd is not None:
            qd.maybe_ready = True
            qd.ready_gen += 1
            qd.signal.notify()

    def wake_all(self) -> None:
        for name in self._queues:
            self.wake(name)

    async def sweep(self) -> None:
        """Every reaper interval: wakes each queue believed empty whose ready lists (or parked
        tasks) say otherwise, which bounds a missed wake (a replica that died between storing
        and publishing, pub/sub lost). A probe, not a claim: a claim would hold the workers'
        credit meanwhile, and a submit in that moment would miss its sync match."""
        for name, qd in list(self._queues.items()):
            if qd.sessions and not qd.maybe_ready and await self.store.has_ready(name):
                self.wake(name)

    def cancel(self, task_id: str, worker_id: str) -> None:
        """Asks the worker running `task_id` to stop, if its stream is on this replica."""
        session = self._sessions.get(worker_id)
        if session is not None and task_id in session.leases:
            session.outbox.put_nowait(worker_service_pb2.ConnectResponse(
                cancel=worker_service_pb2.CancelTask(task_id=task_id, reason="cancel requested")))

    def session(self, worker_id: str) -> WorkerSession | None:
        """The stream of `worker_id` attached on this replica, if any."""
        return self._sessions.get(worker_id)

    def open_sessions(self) -> set[WorkerSession]:
        """The open streams taking from this replica's queues. Read from a metric reader's thread
        too: when the event loop changes them meanwhile, what was gathered so far."""
        sessions: set[WorkerSession] = set()
        try:
            for qd in list(self._queues.values()):
                sessions.update(s for s in list(qd.sessions) if not s.closed)
        except RuntimeError:  # changed size while the event loop ran: report next time
            pass
        return sessions

    async def attach(self, session: WorkerSession) -> None:
        """Adds a worker's stream; returns once each of its queues finished a dispatch round
        begun after that. Until then a claim may hold the hello's credit, and a submit in
        between would not be sync-matched; from then on the credit is settled."""
        for name in session.queues:
            await self.on_serving(name)
        self._sessions[session.worker_id] = session
        rounds: list[tuple[QueueDispatch, int]] = []
        for name in session.queues:
            qd = self.queue(name)
            qd.sessions.append(session)
            if qd.task is None or qd.task.done():
                qd.task = asyncio.create_task(self._run(qd), name=f"dispatch:{name}")
            self.wake(name)
            rounds.append((qd, qd.rounds_started + 1))  # the wake makes the loop start that round
        for qd, round_no in rounds:
            while qd.rounds_done.gen < round_no:
                await qd.rounds_done.wait_change(qd.rounds_done.gen)

    def detach(self, session: WorkerSession) -> None:
        session.closed = True
        if self._sessions.get(session.worker_id) is session:
            del self._sessions[session.worker_id]
        for name in session.queues:
            qd = self._queues.get(name)
            if qd is not None and session in qd.sessions:
                qd.sessions.remove(session)

    def credit_changed(self, session: WorkerSession, held_by: QueueDispatch | None = None) -> None:
        """The worker's credit grew: each of its queues that may hold tasks (but `held_by`) goes
        again. Also called when a claim for one of its queues (`held_by`) gives back the credit it
        held: a round of its other queues meanwhile found none and may have ended with tasks still
        ready, which would otherwise wait for the next credit change or submit."""
        for name in session.queues:
            qd = self._queues.get(name)
            if qd is not None and qd is not held_by and qd.maybe_ready:
                qd.signal.notify()

    # -- the sync-match fast path ------------------------------------------------------

    def offers(self, tasks: list[NewTask]) -> dict[str, tuple[Match, WorkerSession]]:
        """Reserves credit of one local worker per queue for the matchable tasks of a submit
        whose names it declares (Match.takes says which)."""
        wanted: dict[str, list[str]] = {}
        for t in tasks:
            if t.matchable:
                wanted.setdefault(t.queue, []).append(t.name)
        out: dict[str, tuple[Match, WorkerSession]] = {}
        for queue, names in wanted.items():
            qd = self._queues.get(queue)
            if qd is None or not qd.sessions or queue in self.queue_rates:
                continue
            sessions = qd.sessions
            for k in range(len(sessions)):
                session = sessions[(qd.next + k) % len(sessions)]
                count = sum(1 for name in names if session.takes(name)) if session.wants_work else 0
                if count:
                    qd.next += k + 1
                    take = min(count, session.credit)
                    session.credit -= take
                    out[queue] = (Match(queue, session.worker_id, take, self.lease_ttl_ms, session.owner,
                                        session.takes), session)
                    break
        return out

    def refund(self, offers: dict[str, tuple[Match, WorkerSession]]) -> None:
        for match, session in offers.values():
            session.credit += match.credit

    def settle(self, offers: dict[str, tuple[Match, WorkerSession]], specs: Sequence[task_pb2.TaskSpec],
               tasks: list[NewTask], submitted: list[Submitted]) -> None:
        """Pushes what the store leased to each offered worker; returns unused credit.
        Never awaits (see submit_specs): a stream that closed meanwhile gets its leases
        handed back in the background (or by the reaper, should that fail)."""
        leased: dict[str, list[task_pb2.LeasedTask]] = {}
        for spec, task, sub in zip(specs, tasks, submitted, strict=True):
            if sub.lease_token:
                leased.setdefault(sub.queue, []).append(_leased(spec, task, sub, offers[sub.queue][0].worker_id))
        for queue, (match, session) in offers.items():
            batch = leased.get(queue, [])
            session.credit += match.credit - len(batch)
            if not batch:
                continue
            if session.closed:  # the stream ended meanwhile: hand them back
                self._background.spawn(self._hand_back(queue, [(lt.task.id, lt.lease_token) for lt in batch],
                                                       session.owner))
                continue
            self.events.leased(batch, session.worker_id)
            session.push(batch)

    async def _hand_back(self, queue: str, leases: list[tuple[str, str]], owner: str) -> None:
        try:
            await self.store.release(queue, leases, owner)
        except RedisError as exc:
            log.warning("could not hand back %d leases of queue %s (the reaper will): %s", len(leases), queue, exc)
        self.wake(queue)

    # -- Poll: a worker without a stream claims for itself -------------------------------

    async def poll(self, queues: Sequence[str], max_tasks: int, worker_id: str, names: Sequence[str],
                   wait_ms: int) -> list[task_pb2.LeasedTask]:
        """Leases up to `max_tasks` ready tasks of `queues` (in that order) to `worker_id`, polled
        leases held by no stream; when none is ready, waits up to `wait_ms` for a wake of one
        of the queues and claims again."""
        store = self.store
        for queue in queues:
            await self.on_serving(queue)
        loop_deadline = store.clock() / 1000 + wait_ms / 1000
        signals = [self.queue(q).signal for q in queues]
        while True:
            seen = [(sig, sig.gen) for sig in signals]
            leased: list[task_pb2.LeasedTask] = []
            for queue in queues:
                want = max_tasks - len(leased)
                if want <= 0:
                    break
                rate = self.queue_rates.get(queue, "")
                claimed = await store.claim(queue, want, worker_id, 0, rate, names=names)
                if claimed.reserved_ms >= 0:
                    self.on_reserved(queue, claimed.reserved_ms)
                if claimed.parked:
                    self.on_parked(queue, claimed.parked)
                leased += [to_leased(queue, rec) for rec in claimed.records]
            self.events.leased(leased, worker_id)
            remaining = loop_deadline - store.clock() / 1000
            if leased or remaining <= 0 or not await wait_any(seen, remaining):
                return leased

    async def close(self) -> None:
        tasks = [qd.task for qd in self._queues.values() if qd.task is not None]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _run(self, qd: QueueDispatch) -> None:
        backoff = 0.05
        while True:
            seen = qd.signal.gen
            qd.rounds_started += 1
            try:
                more = await self._dispatch_round(qd)
                backoff = 0.05
            except RedisError as exc:
                log.warning("dispatch on queue %s failed: %s; retrying in %.2fs", qd.queue, exc, backoff)
                more = None
            finally:
                qd.rounds_done.notify()  # however the round ended: attach() must not wait forever
            if more is None:
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
                continue
            if not more:
                await qd.signal.wait_change(seen)

    async def _dispatch_round(self, qd: QueueDispatch) -> bool:
        """Claims once for each worker with credit; True when the queue may hold more.

        A short claim means the queue holds nothing more for that worker; it is known empty
        only when every worker's claim came back short (with name-aware dispatch, tasks one
        worker cannot run may wait, parked, for another)."""
        sessions = qd.sessions
        if not sessions:
            return False
        start = qd.next % len(sessions)
        qd.next += 1
        gen = qd.ready_gen
        more = claimed_any = False
        for session in sessions[start:] + sessions[:start]:
            if not session.wants_work:
                continue
            claimed_any = True
            want = min(session.credit, self.batch)
            session.credit -= want
            try:
                claimed = await self.store.claim(qd.queue, want, session.worker_id, self.lease_ttl_ms,
                                                 self.queue_rates.get(qd.queue, ""), session.owner,
                                                 session.task_names)
            finally:
                session.credit += want
                if len(session.queues) > 1:
                    self.credit_changed(session, held_by=qd)
            if claimed.reserved_ms >= 0:
                self.on_reserved(qd.queue, claimed.reserved_ms)
            if claimed.parked:
                self.on_parked(qd.queue, claimed.parked)
            records = claimed.records
            session.credit -= len(records)
            if records:
                leased = [to_leased(qd.queue, rec) for rec in records]
                if session.closed:  # the stream ended while we claimed: hand them back
                    await self.store.release(qd.queue, [(lt.task.id, lt.lease_token) for lt in leased],
                                             session.owner)
                    return True
                self.events.leased(leased, session.worker_id)
                session.push(leased)
            if claimed.cut or len(records) >= want:
                more = True
            elif not claimed.parked_left:
                break  # the queue holds nothing ready for anyone
        if claimed_any and not more and qd.ready_gen == gen:
            qd.maybe_ready = False  # every worker that asked found nothing it can run
        return more


def _leased(spec: task_pb2.TaskSpec, task: NewTask, sub: Submitted, worker_id: str) -> task_pb2.LeasedTask:
    """The LeasedTask of a sync-matched submit, built from its spec: the same message claim.lua's
    record would give through records.to_leased (a unit test holds the two equal), without
    the round trip through hash fields. A matched task is never delayed or rate limited."""
    leased = task_pb2.LeasedTask(lease_token=sub.lease_token)
    t = leased.task
    t.id, t.name, t.queue, t.payload = sub.id, spec.name, sub.queue, spec.payload
    t.content_type = spec.content_type or JSON_TYPE
    t.priority, t.state, t.attempt, t.worker_id = spec.priority, task_pb2.TASK_STATE_ACTIVE, 1, worker_id
    t.idempotency_key = spec.idempotency_key
    if spec.headers:
        t.headers.update(spec.headers)
    set_ms(t.created_at, created_ms(sub.id))
    set_ms(t.started_at, sub.started_ms)
    if spec.HasField("expires_at"):
        t.expires_at.CopyFrom(spec.expires_at)
    set_duration_ms(t.timeout, task.timeout_ms)
    if spec.HasField("soft_timeout"):
        t.soft_timeout.CopyFrom(spec.soft_timeout)
    if spec.HasField("retry"):
        t.retry.CopyFrom(spec.retry)
    set_ms(leased.lease_expires_at, sub.lease_expires_ms)
    set_ms(leased.deadline, sub.deadline_ms)
    return leased
