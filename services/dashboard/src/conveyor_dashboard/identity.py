"""Who a session acts as, learned from AdminService.WhoAmI, and which actions that allows.

The scheduler enforces the roles anyway (each session's calls carry its own token); this table
only decides what the pages offer and lets the dashboard refuse early with 403."""

from __future__ import annotations

from dataclasses import dataclass

import grpc

from conveyor.v1 import admin_service_pb2, admin_service_pb2_grpc

PRODUCER, WORKER, READER, ADMIN = "producer", "worker", "reader", "admin"
_ADMIN = frozenset({ADMIN})
ACTION_ROLES: dict[str, frozenset[str]] = {
    "queue.pause": _ADMIN, "queue.resume": _ADMIN, "queue.purge": _ADMIN,
    "task.cancel": frozenset({PRODUCER, ADMIN}),  # TaskService.Cancel
    "task.retry": _ADMIN,  # RetryTasks / RequeueDeadLetters
    "dead.requeue": _ADMIN, "dead.purge": _ADMIN,
    "worker.drain": _ADMIN, "worker.shutdown": _ADMIN, "worker.scale": _ADMIN,
    "schedule.pause": _ADMIN, "schedule.resume": _ADMIN,
    "schedule.fire": _ADMIN,  # ScheduleService.FireSchedule
    "workflow.cancel": frozenset({PRODUCER, ADMIN}),  # WorkflowService.CancelWorkflow
    "workflow.retry": frozenset({PRODUCER, ADMIN}),  # WorkflowService.RetryWorkflow
}
READ_ROLES = frozenset({READER, ADMIN})


@dataclass(frozen=True)
class Identity:
    name: str
    roles: frozenset[str]
    queues: tuple[str, ...]
    auth_enabled: bool
    signed_in: bool
    """A token given at sign-in (False: the dashboard's own channel, for an open or token-free view)."""

    @property
    def label(self) -> str:
        if not self.auth_enabled:
            return "no auth"
        return f"{self.name} ({', '.join(sorted(self.roles))})" if self.signed_in else "guest (read-only)"

    def may(self, action: str, read_only: bool) -> bool:
        if read_only:
            return False
        if not self.auth_enabled:
            return True
        return self.signed_in and bool(self.roles & ACTION_ROLES[action])


async def who_am_i(channel: grpc.aio.Channel, signed_in: bool) -> Identity:
    """Raises grpc.aio.AioRpcError (UNAUTHENTICATED for an unknown token)."""
    resp: admin_service_pb2.WhoAmIResponse = await admin_service_pb2_grpc.AdminServiceStub(channel).WhoAmI(
        admin_service_pb2.WhoAmIRequest(), timeout=10)
    return Identity(resp.name, frozenset(resp.roles), tuple(resp.queues), resp.auth_enabled, signed_in)
