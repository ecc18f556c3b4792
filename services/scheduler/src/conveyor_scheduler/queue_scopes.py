"""The queues a request names, for tokens scoped to queues (`queues = [...]` in the auth file).

Each function lists (field, queue) for every queue the request touches: a task's queue
after routing (Submit, a schedule's template), a queue field, or the queue a task id
carries (ids embed their queue's number: `Store.queue_name` maps it, cached). A request is
allowed only if the principal may use every queue listed, so a batch with one task outside
the scope is refused whole.

A scoped token is refused what is not tied to queues it may use: a request whose empty
queue field means "every queue" (ListQueues, ListWorkers and TaskFilter without a queue:
SpansQueues; name a queue), and the methods without a finder here: worker registry calls by
worker id (a worker may consume several queues) and every ScheduleService call (schedule
ids are global, so a scoped token could replace another team's schedule) and every
WorkflowService call naming a workflow by id (a workflow spans queues). Reflection
reveals no queue data and is open to scoped readers.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from conveyor.v1 import task_pb2
from conveyor_scheduler.errors import NotFound
from conveyor_scheduler.routing import Router
from conveyor_scheduler.task_lookup import TaskLookup

Named = list[tuple[str, str]]
"""(field path, queue) pairs."""


@dataclass(frozen=True, slots=True)
class Resolver:
    """Where a request's queues come from: the routing rules (a task without a queue) and the
    queue registry (a task id)."""

    router: Router
    lookup: TaskLookup


Finder = Callable[[Any, Resolver], Awaitable[Named]]


class SpansQueues(Exception):
    """The request names no queue (or means every queue): a scoped token may not make it."""

    def __init__(self, field: str) -> None:
        super().__init__(field)
        self.field = field


def routed(specs: Sequence[task_pb2.TaskSpec], resolver: Resolver, at: str) -> Named:
    """Each task's queue: explicit, or where the routing rules send its name (as Submit does)."""
    route = resolver.router.route
    return [(f"{at}[{i}].queue", spec.queue or route(spec.name)) for i, spec in enumerate(specs)]


async def by_id(task_id: str, resolver: Resolver, field: str) -> tuple[str, str]:
    """The queue a task id carries (INVALID_ARGUMENT for a malformed id, NOT_FOUND for an unknown queue)."""
    return field, await resolver.lookup.queue_of(task_id, field)


async def by_ids(task_ids: Sequence[str], resolver: Resolver, at: str) -> Named:
    """As by_id; ids of queues nobody knows are skipped (GetResults reports such tasks as unknown)."""
    named = []
    for i, task_id in enumerate(task_ids):
        try:
            named.append(await by_id(task_id, resolver, f"{at}[{i}]"))
        except NotFound:
            continue
    return named


def queue_field(value: str, field: str, *, empty_means_all: bool = False) -> Named:
    if not value and empty_means_all:
        raise SpansQueues(field)
    return [(field, value)]


async def _submit(r: Any, resolver: Resolver) -> Named:
    return routed(r.tasks, resolver, "tasks")


async def _submit_workflow(r: Any, resolver: Resolver) -> Named:
    """Every node's queue (a scoped token may start a workflow only inside its queues)."""
    return [(f"workflow.nodes[{i}].task.queue", node.task.queue or resolver.router.route(node.task.name))
            for i, node in enumerate(r.workflow.nodes)]


async def _poll(r: Any, resolver: Resolver) -> Named:
    return [(f"queues[{i}]", q) for i, q in enumerate(r.queues)]


async def _ack(r: Any, resolver: Resolver) -> Named:
    return [await by_id(a.task_id, resolver, f"acks[{i}].task_id") for i, a in enumerate(r.acks)]


async def _task_id(r: Any, resolver: Resolver) -> Named:
    return [await by_id(r.task_id, resolver, "task_id")]


async def _task_ids(r: Any, resolver: Resolver) -> Named:
    return await by_ids(r.task_ids, resolver, "task_ids")


async def _queue(r: Any, resolver: Resolver) -> Named:
    return queue_field(r.queue, "queue")


async def _queue_or_all(r: Any, resolver: Resolver) -> Named:
    return queue_field(r.queue, "queue", empty_means_all=True)


async def _filter(r: Any, resolver: Resolver) -> Named:
    return queue_field(r.filter.queue, "filter.queue", empty_means_all=True)


async def hello(r: Any, resolver: Resolver) -> Named:
    """WorkerService.Connect's first message: the queues it consumes and the leases it adopts.
    (Later messages ack leases this stream was given: their lease tokens tie them to it.)"""
    if r.WhichOneof("kind") != "hello":
        return []  # the stream refuses it
    h = r.hello
    named = [(f"hello.queues[{i}]", q) for i, q in enumerate(h.queues)]
    return named + [await by_id(ref.task_id, resolver, f"hello.held[{i}].task_id") for i, ref in enumerate(h.held)]


async def pipelined(r: Any, resolver: Resolver) -> Named:
    """One TaskService.Pipeline message: a submit or a result read."""
    kind = r.WhichOneof("call")
    if kind == "submit":
        return routed(r.submit.tasks, resolver, "submit.tasks")
    if kind == "get_results":
        return await by_ids(r.get_results.task_ids, resolver, "get_results.task_ids")
    return []  # the stream refuses it


T, A = "/conveyor.v1.TaskService/", "/conveyor.v1.AdminService/"
FINDERS: dict[str, Finder] = {
    T + "Submit": _submit, T + "Poll": _poll, T + "Ack": _ack, T + "ExtendLease": _task_id,
    T + "GetResult": _task_id, T + "GetResults": _task_ids, T + "GetTask": _task_id, T + "Cancel": _task_id,
    T + "WatchTask": _task_id,
    A + "ListQueues": _queue_or_all, A + "GetQueueHistory": _queue_or_all,
    A + "PauseQueue": _queue, A + "ResumeQueue": _queue, A + "PurgeQueue": _queue,
    A + "ListTasks": _filter, A + "CancelTasks": _filter, A + "RetryTasks": _filter,
    A + "ListDeadLetters": _queue, A + "RequeueDeadLetters": _queue, A + "PurgeDeadLetters": _queue,
    A + "ListWorkers": _queue_or_all,
    "/conveyor.v1.WorkflowService/SubmitWorkflow": _submit_workflow,
}
"""Unary and server-streaming methods: the queues of their one request."""
STREAM_FINDERS: dict[str, tuple[Finder, bool]] = {
    "/conveyor.v1.WorkerService/Connect": (hello, False),
    T + "Pipeline": (pipelined, True),
}
"""Client-streaming methods: the finder, and whether it reads every message (else the first only)."""
QUEUE_FREE = frozenset({"/conveyor.v1.AdminService/WhoAmI",
                        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
                        "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"})
"""Methods that touch no queue's data: scoped tokens may call them as their roles allow."""
