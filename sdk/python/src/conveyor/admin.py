"""`client.admin`: operator calls (AdminService), the same on `Client` and `AsyncClient`.

To add an AdminService call: a request builder and result parser in `AdminCalls` (one
static method returning an `Rpc`), then one line in `Admin` and one in `AsyncAdmin`.
`tests/unit/test_client_surface.py` fails until both transports have it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

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


class AdminCalls:
    """Request builders and result parsers of the admin calls; no I/O."""

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


class Admin(SyncCalls):
    """`Client.admin`: dead letters (more operator calls to come)."""

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


class AsyncAdmin(AsyncCalls):
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
