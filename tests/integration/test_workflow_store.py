"""The workflow scripts (wf_*.lua) against a real Redis: a node's outcome is applied once
however often it is replayed, children are released when their last parent is done, fail fast
cancels the rest, a late submit of an unwanted node is handed back, retry resets only what
did not succeed, and a big chord stays cheap per completion."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from redis.asyncio import Redis

from conveyor.v1 import task_pb2, workflow_pb2
from conveyor_scheduler.keys import WorkflowKeys
from conveyor_scheduler.workflow_payloads import outcome_of
from conveyor_scheduler.workflow_store import CREATE_CHUNK, GraphNode, OutboxEntry, WorkflowStore

SUCCEEDED, FAILED, CANCELLED = task_pb2.TASK_STATE_SUCCEEDED, task_pb2.TASK_STATE_FAILED, task_pb2.TASK_STATE_CANCELLED
W_RUNNING, W_SUCCEEDED, W_FAILED, W_CANCELLED = (workflow_pb2.WORKFLOW_STATE_RUNNING,
                                                 workflow_pb2.WORKFLOW_STATE_SUCCEEDED,
                                                 workflow_pb2.WORKFLOW_STATE_FAILED,
                                                 workflow_pb2.WORKFLOW_STATE_CANCELLED)


def graph(edges: dict[str, list[str]], mode: int = workflow_pb2.PARENT_RESULTS_LIST) -> list[GraphNode]:
    """Nodes from key -> parents (in insertion order)."""
    children: dict[str, list[str]] = {k: [] for k in edges}
    for key, parents in edges.items():
        for p in parents:
            children[p].append(key)
    return [GraphNode(k, task_pb2.TaskSpec(name=f"t.{k}").SerializeToString(), ps, children[k],
                      mode if ps else 0, "default", f"t.{k}") for k, ps in edges.items()]


def entry(wf: str, node: str, state: int = SUCCEEDED, result: bytes = b"1", run: str = "1",
          task_id: str | None = None) -> OutboxEntry:
    return OutboxEntry("", task_id or f"task-{node}", wf, node, run, state, result, "",
                       "ValueError" if state == FAILED else "", "boom" if state == FAILED else "")


async def apply(store: WorkflowStore, e: OutboxEntry) -> Any:
    return await store.apply(e.workflow_id, [(e, outcome_of(e.state, e.result, e.result_type, e.error_type,
                                                             e.error_message))])


def run(redis_url: str, body: Callable[[WorkflowStore, Redis], Awaitable[None]]) -> None:
    async def main() -> None:
        redis = Redis.from_url(redis_url)
        try:
            await body(WorkflowStore(redis, result_ttl_ms=60_000, clock=lambda: 1_000), redis)
        finally:
            await redis.aclose()

    asyncio.run(main())


def test_the_callback_is_released_once_by_its_last_header_and_replays_change_nothing(redis_url: str) -> None:
    async def body(store: WorkflowStore, redis: Redis) -> None:
        wf = "wf_chord"
        await store.create(wf, graph({"h0": [], "h1": [], "h2": [], "cb": ["h0", "h1", "h2"]}), name="c",
                           policy=0, trace={})
        await store.mark(wf, [("h0", "task-h0"), ("h1", "task-h1"), ("h2", "task-h2")])
        for n, key in enumerate(("h2", "h0")):
            applied = await apply(store, entry(wf, key, result=str(n).encode()))
            assert (applied.codes, applied.state, applied.released) == ([1], W_RUNNING, [])
        last = await apply(store, entry(wf, "h1", result=b'"x"'))
        assert [r.key for r in last.released] == ["cb"]
        (cb,) = last.released
        assert cb.parents == ["h0", "h1", "h2"] and cb.outcomes == [b"r1", b'r"x"', b"r0"]  # parent order
        again = await apply(store, entry(wf, "h1", result=b'"x"'))  # the same entry, replayed
        assert again.codes == [2] and [r.key for r in again.released] == ["cb"]  # not marked yet: offered again
        await store.mark(wf, [("cb", "task-cb")])
        assert (await apply(store, entry(wf, "h1"))).released == []  # marked: nothing more
        assert int(await redis.hget(WorkflowKeys.of(wf).meta, "nf")) == 3
        done = await apply(store, entry(wf, "cb", result=b"[1]"))
        assert done.state == W_SUCCEEDED
        assert await redis.pttl(WorkflowKeys.of(wf).meta) > 0  # kept for the result TTL

    run(redis_url, body)


def test_fail_fast_cancels_what_waits_and_hands_back_running_tasks(redis_url: str) -> None:
    async def body(store: WorkflowStore, redis: Redis) -> None:
        wf = "wf_fast"
        await store.create(wf, graph({"a": [], "b": [], "c": ["a", "b"], "d": ["c"]}), name="", policy=0, trace={})
        await store.mark(wf, [("a", "task-a"), ("b", "task-b")])
        failed = await apply(store, entry(wf, "a", FAILED))
        assert (failed.state, failed.released, failed.cancel) == (W_FAILED, [], ["task-b"])
        states = await redis.hgetall(WorkflowKeys.of(wf).script_keys[3])
        assert states == {b"a": str(FAILED).encode(), b"b": b"2", b"c": b"6", b"d": b"6"}
        meta = await redis.hgetall(WorkflowKeys.of(wf).meta)
        assert meta[b"en"] == b"a" and json.loads(meta[b"ee"])["type"] == "ValueError"
        late = await apply(store, entry(wf, "b", SUCCEEDED))  # b finished before its cancel landed
        assert (late.codes, late.state, late.released) == ([1], W_FAILED, [])
        assert int(meta[b"nn"]) == 4 and int(await redis.hget(WorkflowKeys.of(wf).meta, "nf")) == 4

    run(redis_url, body)


def test_a_node_submitted_after_its_workflow_was_cancelled_is_handed_back(redis_url: str) -> None:
    async def body(store: WorkflowStore, redis: Redis) -> None:
        wf = "wf_cancel"
        await store.create(wf, graph({"a": [], "b": ["a"]}), name="", policy=0, trace={})
        await store.mark(wf, [("a", "task-a")])
        released = await apply(store, entry(wf, "a"))
        assert [r.key for r in released.released] == ["b"]
        assert await store.cancel(wf) == (W_RUNNING, [])  # b is released but not recorded yet
        assert await store.mark(wf, [("b", "task-b")]) == ["task-b"]  # so its task goes back
        assert (await store.cancel(wf))[0] == W_CANCELLED

    run(redis_url, body)


def test_retry_resets_what_did_not_succeed_and_ignores_the_old_run(redis_url: str) -> None:
    async def body(store: WorkflowStore, redis: Redis) -> None:
        wf = "wf_retry"
        await store.create(wf, graph({"a": [], "b": [], "c": ["a", "b"]}), name="", policy=0, trace={})
        await store.mark(wf, [("a", "task-a"), ("b", "task-b")])
        await apply(store, entry(wf, "a", result=b"10"))
        await apply(store, entry(wf, "b", FAILED))
        state, new_run, released = await store.retry(wf)
        assert (state, new_run, [r.key for r in released]) == (W_FAILED, 2, ["b"])
        stale = await apply(store, entry(wf, "b", SUCCEEDED, run="1"))
        assert stale.codes == [0]  # an outcome of run 1 does not count in run 2
        await store.mark(wf, [("b", "task-b2")])
        cb = (await apply(store, entry(wf, "b", run="2", task_id="task-b2", result=b"20"))).released
        assert [(r.key, r.outcomes) for r in cb] == [("c", [b"r10", b"r20"])]  # a's result was kept
        assert (await store.retry(wf))[0] == W_RUNNING  # a running workflow is not retried

    run(redis_url, body)


@pytest.mark.parametrize("policy", [1])
def test_continue_releases_children_of_failed_parents_and_fails_on_a_failed_leaf(redis_url: str,
                                                                                 policy: int) -> None:
    async def body(store: WorkflowStore, redis: Redis) -> None:
        wf = "wf_continue"
        await store.create(wf, graph({"a": [], "b": [], "cb": ["a", "b"], "leaf": []}), name="", policy=policy,
                           trace={})
        await store.mark(wf, [("a", "task-a"), ("b", "task-b"), ("leaf", "task-leaf")])
        await apply(store, entry(wf, "a", FAILED))
        (cb,) = (await apply(store, entry(wf, "b"))).released
        assert cb.outcomes[0].startswith(b"e") and cb.outcomes[1] == b"r1"
        await store.mark(wf, [("cb", "task-cb")])
        await apply(store, entry(wf, "cb"))
        end = await apply(store, entry(wf, "leaf", FAILED))
        assert end.state == W_FAILED
        assert await redis.hget(WorkflowKeys.of(wf).meta, "en") == b"leaf"

    run(redis_url, body)


def test_a_ten_thousand_header_chord_releases_its_callback_once_with_every_result_in_order(redis_url: str) -> None:
    async def body(store: WorkflowStore, redis: Redis) -> None:
        wf = "wf_big"
        n = 10_000
        edges: dict[str, list[str]] = {f"h{i}": [] for i in range(n)}
        edges["cb"] = [f"h{i}" for i in range(n)]
        await store.create(wf, graph(edges), name="", policy=0, trace={})
        await store.mark(wf, [(f"h{i}", f"task-h{i}") for i in range(n)])
        outcomes = [(e, outcome_of(e.state, e.result, "", "", "")) for e in
                    (entry(wf, f"h{i}", result=str(i).encode()) for i in range(n))]
        released = []
        for start in range(0, n, 1000):  # as the outbox is read: batches of 1,000, one call each
            batch = await store.apply(wf, outcomes[start:start + 1000])
            assert batch.codes == [1] * 1000
            released += batch.released
        (cb,) = released
        assert cb.outcomes == [f"r{i}".encode() for i in range(n)]
        again = await store.apply(wf, outcomes[-2:])  # a replayed batch: applied before, offers the callback
        assert again.codes == [2, 2] and [r.key for r in again.released] == ["cb"]

    run(redis_url, body)


def test_a_workflow_stored_in_chunks_expires_unless_its_last_chunk_comes(redis_url: str) -> None:
    async def body(store: WorkflowStore, redis: Redis) -> None:
        edges = {f"n{i}": [] for i in range(CREATE_CHUNK + 5)}
        await store.create("wf_whole", graph(edges), name="", policy=0, trace={})
        keys = WorkflowKeys.of("wf_whole").script_keys
        assert {await redis.pttl(k) for k in keys if await redis.exists(k)} == {-1}  # complete: kept
        half = graph({f"n{i}": [] for i in range(CREATE_CHUNK)})  # as if its replica died after chunk 1
        await store._run("wf_create", "wf_half", "0", "", 0, "{}", CREATE_CHUNK + 5,
                         *[v for n in half for v in (n.key, "{}", n.spec, 0, "1")])
        ttls = {await redis.pttl(k) for k in WorkflowKeys.of("wf_half").script_keys if await redis.exists(k)}
        assert ttls and all(0 < t <= 3_600_000 for t in ttls)

    run(redis_url, body)
