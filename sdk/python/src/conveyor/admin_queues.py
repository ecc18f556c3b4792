"""`client.admin`'s queue calls: stats (`queues`), history, pause, resume, purge.

Kept apart from admin.py (dead letters, workers) so each file stays readable; `Admin` and
`AsyncAdmin` take these methods from `QueueAdmin` and `AsyncQueueAdmin`. As everywhere in
`client.admin`, `QueueCalls` builds each call once and the two mixins only send it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from google.protobuf.duration_pb2 import Duration

from conveyor.calls import AsyncCalls, Rpc, SyncCalls
from conveyor.v1 import admin_service_pb2 as pb

Count = Literal["submitted", "succeeded", "failed", "expired", "cancelled", "dead", "retried", "started"]
"""The counters of a QueueWindow that `QueueWindow.rate` turns into a rate."""


def _seconds(d: Duration) -> float:
    return d.seconds + d.nanos / 1e9


def _maybe_seconds(d: Duration, present: bool) -> float | None:
    """An optional Duration in seconds; None when unset (no queued task, no attempt)."""
    return _seconds(d) if present else None


@dataclass(frozen=True, slots=True)
class QueueWindow:
    """A queue's activity over the last `minutes` minutes (AdminService's `QueueWindow`).

    Counts are fleet-wide (10-second buckets in Redis), so they survive a replica restart.
    Divide by `covered`, not `minutes * 60`: the buckets cover a little less or more."""

    minutes: int
    """1, 5 or 15."""
    covered: float
    """Seconds the counts cover (whole buckets plus the current one's elapsed part)."""
    submitted: int
    """New tasks stored (duplicates excluded)."""
    succeeded: int
    failed: int
    expired: int
    cancelled: int
    dead: int
    retried: int
    """Failed attempts scheduled to run again."""
    started: int
    """Attempts leased."""
    wait_p50: float | None
    """Seconds from ready to leased, of the attempts started in the window; None without any."""
    wait_p95: float | None
    run_p50: float | None
    """Seconds from lease to ack, of the attempts that ended in the window; None without any."""
    run_p95: float | None
    start: float = 0.0
    """When the oldest bucket counted began, in seconds since the epoch (0.0 from an older scheduler)."""

    def rate(self, count: Count) -> float:
        """`count` per second over the window, e.g. `w.rate("succeeded")` (0.0 if it covers nothing)."""
        value: int = getattr(self, count)
        return value / self.covered if self.covered > 0 else 0.0

    @classmethod
    def from_proto(cls, w: pb.QueueWindow) -> QueueWindow:
        return cls(minutes=w.minutes, covered=_seconds(w.covered), submitted=w.submitted, succeeded=w.succeeded,
                   failed=w.failed, expired=w.expired, cancelled=w.cancelled, dead=w.dead, retried=w.retried,
                   started=w.started, wait_p50=_maybe_seconds(w.wait_p50, w.HasField("wait_p50")),
                   wait_p95=_maybe_seconds(w.wait_p95, w.HasField("wait_p95")),
                   run_p50=_maybe_seconds(w.run_p50, w.HasField("run_p50")),
                   run_p95=_maybe_seconds(w.run_p95, w.HasField("run_p95")),
                   start=w.start.seconds + w.start.nanos / 1e9)


@dataclass(frozen=True, slots=True)
class QueueInfo:
    """One queue: depth by state, pause, names nobody runs, recent activity (`QueueStats`)."""

    name: str
    queued: int
    """Ready tasks (the sum of queued_by_priority)."""
    queued_by_priority: tuple[int, ...]
    """Ready tasks of priority 0 to 9 (10 entries)."""
    scheduled: int
    """Tasks waiting for their eta or retry time."""
    active: int
    dead: int
    """Dead letters."""
    oldest_queued_age: float | None
    """Seconds the longest-waiting ready task has waited; None when none is queued."""
    paused: bool
    unserved_names: tuple[str, ...]
    """Names of queued tasks that no connected worker of the queue runs."""
    windows: dict[int, QueueWindow]
    """Activity over the last 1, 5 and 15 minutes, keyed by minutes."""

    @classmethod
    def from_proto(cls, q: pb.QueueStats) -> QueueInfo:
        return cls(name=q.queue, queued=q.queued, queued_by_priority=tuple(q.queued_by_priority),
                   scheduled=q.scheduled, active=q.active, dead=q.dead,
                   oldest_queued_age=_maybe_seconds(q.oldest_queued_age, q.HasField("oldest_queued_age")),
                   paused=q.paused, unserved_names=tuple(q.unserved_names),
                   windows={w.minutes: QueueWindow.from_proto(w) for w in q.windows})


@dataclass(frozen=True, slots=True)
class QueueHistory:
    """Activity minute by minute (`GetQueueHistory`): per queue and added up over them."""

    queues: dict[str, list[QueueWindow]]
    """Each queue's minutes, oldest first; the last one is the current minute so far."""
    total: list[QueueWindow]
    """The queues added up per minute (percentiles from their merged histograms)."""

    @classmethod
    def from_proto(cls, r: pb.GetQueueHistoryResponse) -> QueueHistory:
        return cls(queues={q.queue: [QueueWindow.from_proto(w) for w in q.points] for q in r.queues},
                   total=[QueueWindow.from_proto(w) for w in r.total.points])


class QueueCalls:
    """Request builders and result parsers of the queue calls; no I/O.

    Stats, pause and resume are retried through an outage (pausing twice is a no-op, though
    a retried call may then report `was paused`); purge is not, so its count is this call's."""

    @staticmethod
    def list_queues(queue: str | None) -> Rpc[list[QueueInfo]]:
        req = pb.ListQueuesRequest(queue=queue or "")
        return Rpc("ListQueues", req, lambda r: [QueueInfo.from_proto(q) for q in r.queues], idempotent=True)

    @staticmethod
    def queue_history(queue: str | None, minutes: int) -> Rpc[QueueHistory]:
        req = pb.GetQueueHistoryRequest(queue=queue or "", minutes=minutes)
        return Rpc("GetQueueHistory", req, QueueHistory.from_proto, idempotent=True)

    @staticmethod
    def pause_queue(queue: str) -> Rpc[bool]:
        return Rpc("PauseQueue", pb.PauseQueueRequest(queue=queue), lambda r: r.was_paused, idempotent=True)

    @staticmethod
    def resume_queue(queue: str) -> Rpc[bool]:
        return Rpc("ResumeQueue", pb.ResumeQueueRequest(queue=queue), lambda r: r.was_paused, idempotent=True)

    @staticmethod
    def purge_queue(queue: str) -> Rpc[int]:
        return Rpc("PurgeQueue", pb.PurgeQueueRequest(queue=queue), lambda r: r.purged)


class QueueAdmin(SyncCalls):
    """The queue calls of `Client.admin`. A queue that never had a task raises NotFound."""

    def queues(self, queue: str | None = None) -> list[QueueInfo]:
        """Every queue (or just `queue`), by name: depth, pause, unserved names, 1/5/15-minute activity."""
        return self._call(QueueCalls.list_queues(queue))

    def queue_history(self, queue: str | None = None, minutes: int = 60) -> QueueHistory:
        """The last `minutes` (1-60) minutes of every queue (or just `queue`), minute by minute,
        and their sum: what a chart of throughput, failures and wait draws."""
        return self._call(QueueCalls.queue_history(queue, minutes))

    def pause_queue(self, queue: str) -> bool:
        """Stops every replica leasing `queue`'s tasks (submits still queue up; running attempts go
        on). Returns whether it was paused already."""
        return self._call(QueueCalls.pause_queue(queue))

    def resume_queue(self, queue: str) -> bool:
        """Lets `queue`'s tasks be leased again, in their order. Returns whether it was paused."""
        return self._call(QueueCalls.resume_queue(queue))

    def purge_queue(self, queue: str) -> int:
        """Cancels every queued and scheduled task of `queue` (running ones are left alone: see
        `cancel_tasks`); returns how many."""
        return self._call(QueueCalls.purge_queue(queue))


class AsyncQueueAdmin(AsyncCalls):
    """The queue calls of `AsyncClient.admin`: see QueueAdmin."""

    async def queues(self, queue: str | None = None) -> list[QueueInfo]:
        """See Admin.queues."""
        return await self._call(QueueCalls.list_queues(queue))

    async def queue_history(self, queue: str | None = None, minutes: int = 60) -> QueueHistory:
        """See Admin.queue_history."""
        return await self._call(QueueCalls.queue_history(queue, minutes))

    async def pause_queue(self, queue: str) -> bool:
        """See Admin.pause_queue."""
        return await self._call(QueueCalls.pause_queue(queue))

    async def resume_queue(self, queue: str) -> bool:
        """See Admin.resume_queue."""
        return await self._call(QueueCalls.resume_queue(queue))

    async def purge_queue(self, queue: str) -> int:
        """See Admin.purge_queue."""
        return await self._call(QueueCalls.purge_queue(queue))
