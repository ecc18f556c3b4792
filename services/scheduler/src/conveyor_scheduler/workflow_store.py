"""The workflows' Redis side: one method per workflow script (wf_*.lua), the outboxes, and
reading a workflow back. Every workflow's keys share its hash tag {w:ID}; a node's outcome
comes from its queue's outbox (cv:{q:QUEUE}:wo), written by the script that ended its task."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from redis.commands.core import AsyncScript
from redis.exceptions import ResponseError

from conveyor.v1 import workflow_pb2
from conveyor_scheduler.keys import (
    OUTBOX_GROUP,
    WORKFLOW_CHANNEL,
    WORKFLOW_QUEUES,
    WORKFLOW_RECOVERY,
    QueueKeys,
    WorkflowKeys,
)
from conveyor_scheduler.redis_clients import AsyncRedis
from conveyor_scheduler.store import script_text

CREATE_CHUNK = 2000
"""Nodes stored per wf_create call: a 100,000-node workflow never holds Redis for long."""


@dataclass(frozen=True, slots=True)
class GraphNode:
    """A validated node, as stored."""

    key: str
    spec: bytes
    parents: list[str]
    children: list[str]
    mode: int
    queue: str
    name: str


@dataclass(frozen=True, slots=True)
class Released:
    """A node whose parents are done: submit it (wf_lib.lua's released())."""

    key: str
    spec: bytes
    mode: int
    parents: list[str]
    outcomes: list[bytes | None]


@dataclass(frozen=True, slots=True)
class Applied:
    """What wf_apply did: per outcome, code 0 ignored, 1 applied, 2 applied before; the
    workflow's state after them; the nodes they released; the tasks to cancel."""

    codes: list[int]
    state: int
    released: list[Released]
    cancel: list[str]
    trace: dict[str, str]
    continue_on_failure: bool
    """The trace context its released nodes carry and its FailurePolicy, read in the same call
    (building the released nodes' payloads needs no second round trip)."""


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    """One finished node, as the ending script wrote it to its queue's outbox."""

    entry_id: str
    task_id: str
    workflow_id: str
    node: str
    run: str
    state: int
    result: bytes
    result_type: str
    error_type: str
    error_message: str


def _released(raw: list[Any]) -> Released:
    key, spec, mode, parents, outcomes = raw
    return Released(key.decode(), spec, int(mode), [p.decode() for p in parents],
                    [o if o else None for o in outcomes])


def _text(value: bytes | None) -> str:
    return value.decode() if value else ""


class WorkflowStore:
    SCRIPTS = ("wf_create", "wf_apply", "wf_mark", "wf_cancel", "wf_retry", "wf_ready")

    def __init__(self, redis: AsyncRedis, *, result_ttl_ms: int, clock: Callable[[], int]) -> None:
        self.redis = redis
        self.result_ttl_ms = result_ttl_ms
        self.clock = clock
        self._scripts: dict[str, AsyncScript] = {name: redis.register_script(script_text(name))
                                                 for name in self.SCRIPTS}

    async def _run(self, script: str, workflow_id: str, *args: object) -> Any:
        keys = WorkflowKeys.of(workflow_id).script_keys
        return await self._scripts[script](keys=keys, args=[self.clock(), self.result_ttl_ms, WORKFLOW_CHANNEL,
                                                             workflow_id, *args])

    async def create(self, workflow_id: str, nodes: Sequence[GraphNode], *, name: str, policy: int,
                     trace: dict[str, str]) -> None:
        """Stores the workflow in chunks; the last one makes it exist."""
        leaves = {n.key for n in nodes if not n.children}
        for start in range(0, len(nodes), CREATE_CHUNK):
            chunk = nodes[start:start + CREATE_CHUNK]
            last = start + CREATE_CHUNK >= len(nodes)
            args: list[object] = ["1" if last else "0", name, policy, json.dumps(trace), len(nodes)]
            for n in chunk:
                graph = json.dumps({"p": n.parents, "c": n.children, "m": n.mode, "q": n.queue, "n": n.name},
                                   separators=(",", ":"))
                args += [n.key, graph, n.spec, len(n.parents), "1" if n.key in leaves else "0"]
            await self._run("wf_create", workflow_id, *args)

    async def apply(self, workflow_id: str, outcomes: Sequence[tuple[OutboxEntry, bytes]]) -> Applied:
        """Applies outcomes of one workflow's nodes, in order, in one script call (a chord's
        headers finishing together cost one call per batch read from the outbox, not one each)."""
        args: list[object] = []
        for entry, outcome in outcomes:
            args += [entry.node, entry.task_id, entry.run, entry.state, outcome]
        codes, state, released, cancel, trace, policy = await self._run("wf_apply", workflow_id, *args)
        nodes = {r.key: r for r in map(_released, released)}  # two replays may offer one child twice
        return Applied([int(c) for c in codes], int(state), list(nodes.values()), [c.decode() for c in cancel],
                       json.loads(trace) if trace else {}, int(policy) == workflow_pb2.FAILURE_POLICY_CONTINUE)

    async def mark(self, workflow_id: str, submitted: Sequence[tuple[str, str]]) -> list[str]:
        """Records (node key, task id) pairs; returns the task ids the workflow no longer wants."""
        flat = [v for pair in submitted for v in pair]
        return [c.decode() for c in await self._run("wf_mark", workflow_id, *flat)]

    async def ready(self, workflow_id: str) -> tuple[int, int, list[Released]]:
        """(state or 0 when gone, run, the released nodes not yet marked submitted)."""
        state, run, released = await self._run("wf_ready", workflow_id)
        return int(state), int(run), [_released(r) for r in released]

    async def cancel(self, workflow_id: str) -> tuple[int, list[str]]:
        """(state before, 0 when gone; task ids to cancel)."""
        state, cancel = await self._run("wf_cancel", workflow_id)
        return int(state), [c.decode() for c in cancel]

    async def retry(self, workflow_id: str) -> tuple[int, int, list[Released]]:
        """(state before, 0 when gone; the new run; the nodes released at once)."""
        state, run, released = await self._run("wf_retry", workflow_id)
        return int(state), int(run), [_released(r) for r in released]

    # -- reading a workflow ----------------------------------------------------------------

    async def read(self, workflow_id: str) -> tuple[dict[bytes, bytes], list[str], dict[str, Any]] | None:
        """(meta hash, node keys in order, per-node maps g/ns/nt) or None when there is none."""
        k = WorkflowKeys.of(workflow_id).script_keys
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(k[0])
            pipe.lrange(k[8], 0, -1)
            pipe.hgetall(k[1])
            pipe.hgetall(k[3])
            pipe.hgetall(k[4])
            meta, order, graph, states, tasks = await pipe.execute()
        if not meta or b"st" not in meta:
            return None
        return meta, [o.decode() for o in order], {"graph": graph, "states": states, "tasks": tasks}

    async def policy_and_trace(self, workflow_id: str) -> tuple[int, dict[str, str]]:
        """The workflow's FailurePolicy and the trace context its nodes carry."""
        policy, trace = await self.redis.hmget(WorkflowKeys.of(workflow_id).meta, "pol", "tp")
        return int(policy or 0), json.loads(trace) if trace else {}

    async def outcomes(self, workflow_id: str, nodes: Sequence[str]) -> list[bytes | None]:
        return list(await self.redis.hmget(WorkflowKeys.of(workflow_id).script_keys[5], list(nodes)))

    # -- recovery bookkeeping --------------------------------------------------------------

    async def watch_for_recovery(self, workflow_id: str, after_ms: int) -> None:
        await self.redis.zadd(WORKFLOW_RECOVERY, {workflow_id: self.clock() + after_ms})

    async def recovered(self, workflow_id: str) -> None:
        await self.redis.zrem(WORKFLOW_RECOVERY, workflow_id)

    async def due_for_recovery(self, limit: int = 100) -> list[str]:
        ids = await self.redis.zrangebyscore(WORKFLOW_RECOVERY, "-inf", self.clock(), start=0, num=limit)
        return [i.decode() for i in ids]

    # -- the outboxes ----------------------------------------------------------------------

    async def prepare_outboxes(self, queues: Sequence[str]) -> None:
        """Registers `queues` for the sweep and makes sure each outbox has the consumer group
        (before any node of theirs can finish)."""
        if queues:
            await self.redis.sadd(WORKFLOW_QUEUES, *queues)
        for queue in queues:
            await self._group(queue)

    async def _group(self, queue: str) -> None:
        try:
            await self.redis.xgroup_create(QueueKeys.of(queue).outbox, OUTBOX_GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def outbox_queues(self) -> list[str]:
        return sorted(q.decode() for q in await self.redis.smembers(WORKFLOW_QUEUES))

    async def read_outbox(self, queue: str, consumer: str, count: int = 1000) -> list[OutboxEntry]:
        """New entries of `queue`'s outbox for this replica (the group hands each to one consumer)."""
        key = QueueKeys.of(queue).outbox
        try:
            reply = await self.redis.xreadgroup(OUTBOX_GROUP, consumer, {key: ">"}, count=count)
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            await self._group(queue)
            return []
        return [_entry(eid, fields) for _, entries in reply or [] for eid, fields in entries]

    async def claim_stale(self, queue: str, consumer: str, idle_ms: int, count: int = 1000) -> list[OutboxEntry]:
        """Entries handed to a consumer that has not acknowledged them for `idle_ms` (its
        replica died, or failed to apply them): they are this replica's now."""
        key = QueueKeys.of(queue).outbox
        try:
            reply = await self.redis.xautoclaim(key, OUTBOX_GROUP, consumer, idle_ms, "0-0", count=count)
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            await self._group(queue)
            return []
        return [_entry(eid, fields) for eid, fields in reply[1] if fields]

    async def done(self, queue: str, entry_ids: Sequence[str]) -> None:
        """The entries are applied: acknowledge and delete them (the outbox stays small)."""
        if entry_ids:
            key = QueueKeys.of(queue).outbox
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.xack(key, OUTBOX_GROUP, *entry_ids)
                pipe.xdel(key, *entry_ids)
                await pipe.execute()


def _entry(entry_id: bytes, raw: dict[bytes, bytes]) -> OutboxEntry:
    """An outbox entry's fields (KEY_PATTERNS' cv:{q:QUEUE}:wo row: a stream entry, not a hash)."""
    f = {k.decode(): v for k, v in raw.items()}
    return OutboxEntry(entry_id.decode(), _text(f.get("t")), _text(f.get("w")), _text(f.get("n")), _text(f.get("u")),
                       int(f.get("s", 0)), f.get("r", b""), _text(f.get("rc")), _text(f.get("et")),
                       _text(f.get("em")))
