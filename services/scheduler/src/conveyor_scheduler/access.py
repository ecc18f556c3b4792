"""Roles -> methods: which role may call which RPC, the single source of the access rules.

With `--auth-file`, every call needs a token (or a client certificate listed in the file)
whose roles include one of the method's roles here. The README and the service comments in
proto/conveyor/v1/*.proto show this same table (`python -m conveyor_scheduler.access`
prints it; a test holds the .proto comments to it). A method missing from the table can be
called by `admin` only. Health checks need nothing.
"""

from __future__ import annotations

import sys

PRODUCER, WORKER, READER, ADMIN = "producer", "worker", "reader", "admin"
ROLES = (PRODUCER, WORKER, READER, ADMIN)

_P, _W, _R, _A = frozenset({PRODUCER}), frozenset({WORKER}), frozenset({READER}), frozenset({ADMIN})
ADMIN_ONLY = _A
READS = _R | _A

TABLE: dict[str, dict[str, frozenset[str]]] = {
    "conveyor.v1.TaskService": {
        "Submit": _P | _W | _A,  # a worker's tasks may submit tasks
        "Poll": _W | _A,
        "Ack": _W | _A,
        "ExtendLease": _W | _A,
        "GetResult": _P | _W | _R | _A,  # a worker's tasks may wait on the tasks they spawned
        "GetResults": _P | _W | _R | _A,
        "GetTask": _P | _W | _R | _A,
        "Cancel": _P | _A,
        "WatchTask": _P | _W | _R | _A,
        "Pipeline": _P | _W | _R | _A,  # the SDK's submit and result path; each message as its call (CARRIED)
    },
    "conveyor.v1.WorkerService": {
        "Connect": _W | _A,
    },
    "conveyor.v1.AdminService": {
        "ListQueues": READS,
        "GetQueueHistory": READS,
        "PauseQueue": ADMIN_ONLY,
        "ResumeQueue": ADMIN_ONLY,
        "PurgeQueue": ADMIN_ONLY,
        "ListTasks": READS,
        "CancelTasks": ADMIN_ONLY,
        "RetryTasks": ADMIN_ONLY,
        "ListDeadLetters": READS,
        "RequeueDeadLetters": ADMIN_ONLY,
        "PurgeDeadLetters": ADMIN_ONLY,
        "ListWorkers": READS,
        "GetWorker": READS,
        "DrainWorker": ADMIN_ONLY,
        "ShutdownWorker": ADMIN_ONLY,
        "SetConcurrency": ADMIN_ONLY,
        "WhoAmI": _P | _W | _R | _A,  # a client learns what to offer (the dashboard's sign-in)
    },
    "conveyor.v1.ScheduleService": {
        "CreateSchedule": ADMIN_ONLY,
        "UpdateSchedule": ADMIN_ONLY,
        "DeleteSchedule": ADMIN_ONLY,
        "PauseSchedule": ADMIN_ONLY,
        "ResumeSchedule": ADMIN_ONLY,
        "GetSchedule": READS,
        "ListSchedules": READS,
        "FireSchedule": ADMIN_ONLY,
    },
    "conveyor.v1.WorkflowService": {
        "SubmitWorkflow": _P | _W | _A,  # a worker's tasks may start workflows
        "GetWorkflow": _P | _W | _R | _A,
        "WatchWorkflow": _P | _W | _R | _A,
        "CancelWorkflow": _P | _A,
        "RetryWorkflow": _P | _A,
    },
    "grpc.reflection.v1.ServerReflection": {
        "ServerReflectionInfo": READS,
    },
    "grpc.reflection.v1alpha.ServerReflection": {
        "ServerReflectionInfo": READS,
    },
}
CARRIED: dict[str, dict[str, tuple[str, dict[str, str]]]] = {
    "conveyor.v1.TaskService": {"Pipeline": ("call", {"submit": "Submit", "get_results": "GetResults"})},
}
"""service -> stream -> (the request's oneof that says a message's kind, kind -> the method whose
roles that message needs). The stream's own roles in TABLE are the union of its kinds' (a test
holds them so, and holds each kind's field to its method's request type)."""
PUBLIC_SERVICES = frozenset({"grpc.health.v1.Health"})
"""Services every caller may use without a token (load balancers and orchestrators probe them)."""

ALLOWED: dict[str, frozenset[str]] = {
    f"/{service}/{method}": roles for service, methods in TABLE.items() for method, roles in methods.items()}
"""Full method path (as gRPC names it, "/package.Service/Method") -> roles that may call it."""


MESSAGE_ROLES: dict[str, tuple[str, dict[str, frozenset[str]]]] = {
    f"/{service}/{stream}": (oneof, {kind: ALLOWED[f"/{service}/{method}"] for kind, method in kinds.items()})
    for service, streams in CARRIED.items() for stream, (oneof, kinds) in streams.items()}
"""Full stream path -> (oneof, message kind -> roles that may send such a message on it)."""


def is_public(method: str) -> bool:
    """True for a method that needs no credential (health checks)."""
    return method.lstrip("/").rpartition("/")[0] in PUBLIC_SERVICES


def roles_for(method: str) -> frozenset[str]:
    """Roles that may call `method` (a full path); admin only for a method the table lacks."""
    return ALLOWED.get(method, ADMIN_ONLY)


def roles_for_message(method: str, kind: str | None) -> frozenset[str] | None:
    """Roles that may send a `kind` message on stream `method`; None when its messages are not
    checked by kind (or for a message that sets no kind: the handler refuses it)."""
    carried = MESSAGE_ROLES.get(method)
    return None if carried is None or kind is None else carried[1].get(kind, ADMIN_ONLY)


def _rows(service: str) -> list[tuple[str, frozenset[str]]]:
    """(label, roles) of a service's table: each method, then each message kind of a stream."""
    rows = []
    for method, roles in TABLE[service].items():
        rows.append((method, roles))
        _, kinds = CARRIED.get(service, {}).get(method, ("", {}))
        for kind, carried in kinds.items():
            rows.append((f"{method} {kind}", TABLE[service][carried]))
    return rows


def comment_lines(service: str) -> list[str]:
    """The table of one service as it stands in that service's .proto comment."""
    rows = _rows(service)
    width = max(len(label) for label, _ in rows)
    lines = [f"{'RPC':<{width}}  " + "  ".join(ROLES)]
    for label, roles in rows:
        cells = [("yes" if role in roles else "-").ljust(len(role)) for role in ROLES]
        lines.append(f"{label:<{width}}  " + "  ".join(cells).rstrip())
    return lines


def markdown_table() -> str:
    """Every service's table as Markdown (for the README)."""
    out = ["| RPC | " + " | ".join(ROLES) + " |", "| --- |" + " :-: |" * len(ROLES)]
    for service in TABLE:
        for label, roles in _rows(service):
            method, _, kind = label.partition(" ")
            shown = f"{method}: each {kind} message" if kind else method
            out.append(f"| {service.removeprefix('conveyor.v1.')}/{shown} | "
                       + " | ".join("yes" if role in roles else "-" for role in ROLES) + " |")
    out.append("| grpc.health.v1.Health/* (no token needed) | " + " | ".join("yes" for _ in ROLES) + " |")
    return "\n".join(out)


if __name__ == "__main__":
    sys.stdout.write(markdown_table() + "\n")
