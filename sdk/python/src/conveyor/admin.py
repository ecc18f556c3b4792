"""`client.admin`: operator calls (AdminService), the same on `Client` and `AsyncClient`.

To add an AdminService call: a request builder and result parser in `AdminCalls` (one
static method returning an `Rpc`), then one line in `Admin` and one in `AsyncAdmin`.
`tests/unit/test_client_surface.py` fails until both transports have it.

This file holds dead letters and the worker registry; the queue calls live in
admin_queues.py and the task search and bulk actions in admin_tasks.py, each built the
same way (a `*Calls` class, then a sync and an async mixin that `Admin` and `AsyncAdmin`
inherit).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

from google.protobuf.timestamp_pb2 import Timestamp

from conveyor.admin_queues import AsyncQueueAdmin, QueueAdmin
from conveyor.admin_tasks import AsyncTaskAdmin, TaskAdmin
from conveyor.calls import AsyncCalls, Rpc, SyncCalls
from conveyor.v1 import admin_service_pb2 as pb
from conveyor.v1 import admin_service_pb2_grpc as pb_grpc
from conveyor.v1 import task_pb2


class DeadLetters(NamedTuple):
    """One page of a queue's dead letters. A tuple, so `tasks, total = ...` keeps working
    for callers of the deprecated `Client.dead_letters`, which returned (tasks, total)."""

    tasks: list[task_pb2.Task]
    """The page, oldest first; each record has its last error and traceback."""
    total: int
    """How many dead letters the queue has in all (for paging)."""


@dataclass(frozen=True, slots=True)
class WorkerInfo:
    """One connected worker, as the worker registry holds it (AdminService's `Worker`).

    Counts, slots and the tasks it runs are as of its last heartbeat, so they trail the
    worker by up to one heartbeat interval."""

    id: str
    """Its worker id (`conveyor-worker --worker-id`, else host-pid-random)."""
    host: str
    pid: int
    sdk: str
    """SDK name/version, e.g. "conveyor-python/0.1.0"."""
    queues: tuple[str, ...]
    task_names: tuple[str, ...]
    """The task names it declared; empty: it takes any name."""
    concurrency: int
    """Slots: tasks it runs at once."""
    prefetch: int
    """Leases it may hold beyond its slots."""
    active_task_ids: tuple[str, ...]
    """The tasks it runs."""
    succeeded: int
    """Attempts finished with a result since the worker process started."""
    failed: int
    """Attempts finished with a failure since the worker process started."""
    started_at: dt.datetime | None
    """When the worker process started (UTC); None when the worker did not say."""
    scheduler_id: str
    """The scheduler replica holding its stream."""
    connected_at: dt.datetime
    """When that stream was accepted (UTC)."""
    last_heartbeat: dt.datetime
    """Its last heartbeat (UTC); connected_at until the first one."""
    expires_at: dt.datetime
    """Its entry lapses then (UTC) unless a heartbeat comes first."""
    draining: bool
    """It takes no new work (drained, or shutting down)."""

    @property
    def in_flight(self) -> int:
        """How many tasks it runs."""
        return len(self.active_task_ids)

    @classmethod
    def from_proto(cls, w: pb.Worker) -> WorkerInfo:
        return cls(id=w.worker_id, host=w.hostname, pid=w.pid, sdk=w.sdk, queues=tuple(w.queues),
                   task_names=tuple(w.task_names), concurrency=w.concurrency, prefetch=w.prefetch,
                   active_task_ids=tuple(w.active_task_ids), succeeded=w.succeeded, failed=w.failed,
                   started_at=_time(w.started_at) if w.HasField("started_at") else None,
                   scheduler_id=w.scheduler_id, connected_at=_time(w.connected_at),
                   last_heartbeat=_time(w.last_heartbeat), expires_at=_time(w.expires_at), draining=w.draining)


def _time(ts: Timestamp) -> dt.datetime:
    return ts.ToDatetime(dt.UTC)


def _worker(resp: pb.GetWorkerResponse | pb.DrainWorkerResponse | pb.ShutdownWorkerResponse
            | pb.SetConcurrencyResponse) -> WorkerInfo:
    return WorkerInfo.from_proto(resp.worker)


class AdminCalls:
    """Request builders and result parsers of the admin calls; no I/O.

    Reads are retried through an outage (UNAVAILABLE) within the client's timeout. So are the
    worker control calls: AdminService says repeating one is safe (a second drain of a
    draining worker changes nothing), and a request the scheduler relayed while its replica
    was cut off is lost, so sending it again is what the caller would do anyway. A retried
    shutdown whose first try got through may answer NOT_FOUND if the worker left meanwhile.
    """

    @staticmethod
    def list_dead_letters(queue: str, limit: int, offset: int) -> Rpc[DeadLetters]:
        req = pb.ListDeadLettersRequest(queue=queue, limit=limit, offset=offset)
        return Rpc("ListDeadLetters", req, lambda r: DeadLetters(list(r.tasks), r.total), idempotent=True)

    @staticmethod
    def requeue_dead_letters(queue: str, task_ids: Sequence[str]) -> Rpc[int]:
        req = pb.RequeueDeadLettersRequest(queue=queue, task_ids=task_ids, all=not task_ids)
        return Rpc("RequeueDeadLetters", req, lambda r: r.requeued)

    @staticmethod
    def purge_dead_letters(queue: str, task_ids: Sequence[str]) -> Rpc[int]:
        req = pb.PurgeDeadLettersRequest(queue=queue, task_ids=task_ids, all=not task_ids)
        return Rpc("PurgeDeadLetters", req, lambda r: r.purged)

    @staticmethod
    def list_workers(queue: str | None) -> Rpc[list[WorkerInfo]]:
        req = pb.ListWorkersRequest(queue=queue or "")
        return Rpc("ListWorkers", req, lambda r: [WorkerInfo.from_proto(w) for w in r.workers], idempotent=True)

    @staticmethod
    def get_worker(worker_id: str) -> Rpc[WorkerInfo]:
        return Rpc("GetWorker", pb.GetWorkerRequest(worker_id=worker_id), _worker, idempotent=True)

    @staticmethod
    def drain_worker(worker_id: str, reason: str) -> Rpc[WorkerInfo]:
        return Rpc("DrainWorker", pb.DrainWorkerRequest(worker_id=worker_id, reason=reason), _worker, idempotent=True)

    @staticmethod
    def shutdown_worker(worker_id: str, reason: str) -> Rpc[WorkerInfo]:
        req = pb.ShutdownWorkerRequest(worker_id=worker_id, reason=reason)
        return Rpc("ShutdownWorker", req, _worker, idempotent=True)

    @staticmethod
    def set_concurrency(worker_id: str, concurrency: int) -> Rpc[WorkerInfo]:
        req = pb.SetConcurrencyRequest(worker_id=worker_id, concurrency=concurrency)
        return Rpc("SetConcurrency", req, _worker, idempotent=True)


class Admin(QueueAdmin, TaskAdmin, SyncCalls):
    """`Client.admin`: queues, task search and bulk actions, dead letters, the worker registry
    and worker control.

    The control calls (drain, shutdown, set_concurrency) return once the scheduler relayed the
    request to the worker's stream, with the entry as it was before the worker acted: read the
    effect with `get_worker`, or see the worker leave `list_workers`. An unknown worker id
    raises NotFound."""

    stub_type = pb_grpc.AdminServiceStub

    def list_dead_letters(self, queue: str, limit: int = 100, offset: int = 0) -> DeadLetters:
        """A page of `queue`'s dead letters, oldest first, and how many there are."""
        return self._call(AdminCalls.list_dead_letters(queue, limit, offset))

    def requeue_dead_letters(self, queue: str, task_ids: Sequence[str] = ()) -> int:
        """Requeues the named dead letters of `queue` (all of them when none are named) for a
        fresh set of attempts; returns how many."""
        return self._call(AdminCalls.requeue_dead_letters(queue, task_ids))

    def purge_dead_letters(self, queue: str, task_ids: Sequence[str] = ()) -> int:
        """Deletes the named dead letters of `queue` (all of them when none are named); returns how many."""
        return self._call(AdminCalls.purge_dead_letters(queue, task_ids))

    def list_workers(self, queue: str | None = None) -> list[WorkerInfo]:
        """The connected stream workers (all, or those consuming `queue`), by worker id; every
        replica answers the same."""
        return self._call(AdminCalls.list_workers(queue))

    def get_worker(self, worker_id: str) -> WorkerInfo:
        """One worker's registry entry; NotFound when it is not connected."""
        return self._call(AdminCalls.get_worker(worker_id))

    def drain_worker(self, worker_id: str, reason: str = "") -> WorkerInfo:
        """Asks the worker to take no new work and finish what it runs; it stays connected,
        shown draining (its prefetched tasks go back to the queue). `reason` is logged by it."""
        return self._call(AdminCalls.drain_worker(worker_id, reason))

    def shutdown_worker(self, worker_id: str, reason: str = "") -> WorkerInfo:
        """Asks the worker to drain and then exit, as on SIGTERM."""
        return self._call(AdminCalls.shutdown_worker(worker_id, reason))

    def set_concurrency(self, worker_id: str, concurrency: int) -> WorkerInfo:
        """Gives the worker `concurrency` slots (1 to 10,000): more start at once; fewer let the
        running attempts finish first. The entry shows it after the worker's next heartbeat."""
        return self._call(AdminCalls.set_concurrency(worker_id, concurrency))


class AsyncAdmin(AsyncQueueAdmin, AsyncTaskAdmin, AsyncCalls):
    """`AsyncClient.admin`: see Admin."""

    stub_type = pb_grpc.AdminServiceStub

    async def list_dead_letters(self, queue: str, limit: int = 100, offset: int = 0) -> DeadLetters:
        """See Admin.list_dead_letters."""
        return await self._call(AdminCalls.list_dead_letters(queue, limit, offset))

    async def requeue_dead_letters(self, queue: str, task_ids: Sequence[str] = ()) -> int:
        """See Admin.requeue_dead_letters."""
        return await self._call(AdminCalls.requeue_dead_letters(queue, task_ids))

    async def purge_dead_letters(self, queue: str, task_ids: Sequence[str] = ()) -> int:
        """See Admin.purge_dead_letters."""
        return await self._call(AdminCalls.purge_dead_letters(queue, task_ids))

    async def list_workers(self, queue: str | None = None) -> list[WorkerInfo]:
        """See Admin.list_workers."""
        return await self._call(AdminCalls.list_workers(queue))

    async def get_worker(self, worker_id: str) -> WorkerInfo:
        """See Admin.get_worker."""
        return await self._call(AdminCalls.get_worker(worker_id))

    async def drain_worker(self, worker_id: str, reason: str = "") -> WorkerInfo:
        """See Admin.drain_worker."""
        return await self._call(AdminCalls.drain_worker(worker_id, reason))

    async def shutdown_worker(self, worker_id: str, reason: str = "") -> WorkerInfo:
        """See Admin.shutdown_worker."""
        return await self._call(AdminCalls.shutdown_worker(worker_id, reason))

    async def set_concurrency(self, worker_id: str, concurrency: int) -> WorkerInfo:
        """See Admin.set_concurrency."""
        return await self._call(AdminCalls.set_concurrency(worker_id, concurrency))
