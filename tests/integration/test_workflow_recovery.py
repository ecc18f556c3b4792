"""What a dead or failing replica leaves in a queue's workflow outbox is finished by a sweep
(Workflows.sweep), against a real Redis: the real WorkflowStore and outbox, with the submit of
released nodes recorded instead of made.

An outbox entry is in one of two places until it is applied: handed to a replica's consumer
(pending: XAUTOCLAIM finds it once idle) or not yet handed to anyone (only a read of new
entries finds it). A replica that dies between a node's end and its read, or whose read
fails, leaves the entry in the second place, and no later publish may come to fetch it: the
chain below has nothing else running, so its next step would never run.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Sequence

from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from conveyor.v1 import task_pb2
from conveyor_scheduler.keys import OUTBOX_GROUP, QueueKeys, WorkflowKeys
from conveyor_scheduler.store import Submitted
from conveyor_scheduler.validation import NewTask
from conveyor_scheduler.workflow_store import GraphNode, OutboxEntry, WorkflowStore
from conveyor_scheduler.workflows import NodeTask, Workflows

WF = "wf_01J0000000000000000000RECV"
OUTBOX = QueueKeys.of("default").outbox


def chain_graph() -> list[GraphNode]:
    """a -> b, b given a's result."""
    spec = task_pb2.TaskSpec(name="t.step", payload=b'{"args": [10], "kwargs": {}}').SerializeToString()
    return [GraphNode("a", spec, [], ["b"], 0, "default", "t.step"),
            GraphNode("b", spec, ["a"], [], 1, "default", "t.step")]


class FlakyStore(WorkflowStore):
    """A store whose first `failures` outbox reads fail as a lost connection would."""

    failures = 0

    async def read_outbox(self, queue: str, consumer: str, count: int = 100) -> list[OutboxEntry]:
        if self.failures:
            self.failures -= 1
            raise RedisConnectionError("connection lost (injected)")
        return await super().read_outbox(queue, consumer, count)


def replica(store: WorkflowStore, name: str, submitted: list[NodeTask]) -> Workflows:
    async def submit_nodes(nodes: list[NodeTask]) -> list[Submitted]:
        submitted.extend(nodes)
        return [Submitted(f"task-{fields[3]!s}", "default", task_pb2.TASK_STATE_QUEUED, False) for _, fields in nodes]

    async def cancel_tasks(ids: list[str]) -> None:
        raise AssertionError(f"nothing is cancelled here: {ids}")

    async def task_states(ids: list[str]) -> list[int]:
        return [task_pb2.TASK_STATE_QUEUED for _ in ids]

    def check_task(spec: task_pb2.TaskSpec, at: str) -> NewTask:
        raise AssertionError("no submit here")

    return Workflows(store, check_task=check_task, submit_nodes=submit_nodes, cancel_tasks=cancel_tasks,
                     task_states=task_states, consumer=name)


async def a_ended(redis: Redis, store: WorkflowStore) -> None:
    """The workflow a -> b with a submitted, then a's end as lib.lua's finish() writes it."""
    await store.prepare_outboxes(["default"])
    await store.create(WF, chain_graph(), name="chain", policy=0, trace={})
    await store.mark(WF, [("a", "task-a")])
    await redis.xadd(OUTBOX, {"t": "task-a", "w": WF, "n": "a", "u": "1", "s": task_pb2.TASK_STATE_SUCCEEDED,
                              "r": "11", "rc": "", "et": "", "em": ""})


async def b_submitted(redis: Redis, submitted: Sequence[NodeTask]) -> None:
    """b was submitted once, with a's result first, and recorded; the outbox is empty."""
    assert [(spec.idempotency_key, json.loads(spec.payload)) for spec, _ in submitted] == [
        (f"wf:{WF}:1:b", {"args": [11, 10], "kwargs": {}})]
    assert await redis.hget(WorkflowKeys.of(WF).script_keys[4], "b") == b"task-b"
    assert await redis.xlen(OUTBOX) == 0
    assert (await redis.xpending(OUTBOX, OUTBOX_GROUP))["pending"] == 0


async def swept(workflows: Workflows) -> None:
    """Runs a sweep and waits for the outbox reads it started."""
    await workflows.sweep()
    await drained(workflows)


async def drained(workflows: Workflows) -> None:
    await asyncio.gather(*(d.task for d in workflows._drains.values() if d.task is not None))


def run(redis_url: str, body: Callable[[Redis], Awaitable[None]]) -> None:
    async def main() -> None:
        redis = Redis.from_url(redis_url)
        try:
            await body(redis)
        finally:
            await redis.aclose()

    asyncio.run(main())


def test_an_entry_its_dead_replica_never_read_is_applied_by_the_next_sweep(redis_url: str) -> None:
    """The only replica died between a's end and reading it: its successor's sweep applies it."""
    async def body(redis: Redis) -> None:
        store = WorkflowStore(redis, result_ttl_ms=60_000, clock=lambda: 1_000)
        await a_ended(redis, store)
        submitted: list[NodeTask] = []
        await swept(replica(store, "successor", submitted))
        await b_submitted(redis, submitted)

    run(redis_url, body)


def test_an_entry_whose_read_failed_is_applied_by_the_sweep(redis_url: str) -> None:
    async def body(redis: Redis) -> None:
        store = FlakyStore(redis, result_ttl_ms=60_000, clock=lambda: 1_000)
        store.failures = 1
        await a_ended(redis, store)
        submitted: list[NodeTask] = []
        workflows = replica(store, "r1", submitted)
        workflows.outbox_written("cv:{q:default}:")  # the publish is heard; the read fails
        await drained(workflows)
        assert submitted == [] and await redis.xlen(OUTBOX) == 1
        await swept(workflows)
        await b_submitted(redis, submitted)

    run(redis_url, body)
