"""Name-aware dispatch: a task is leased only to a worker that declares its name.

claim.lua's rules, checked against real Redis through an in-process Store (nothing races):
strict priority and FIFO among the tasks a worker can take, tasks of other names parked
without blocking them, a generic worker (no names) taking any, a parked task's cancel, and
the parking budget of one call. Then over real gRPC: Poll with task_names, GetTask's
waiting_reason, and the sync match that skips a worker which does not declare the name.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator, Sequence

import grpc
import pytest
import redis
from redis.asyncio import Redis as AsyncRedis

from conveyor import Call, Client, SubmitOptions, TaskState
from conveyor.common import submit_request
from conveyor.v1 import task_pb2, task_service_pb2, task_service_pb2_grpc
from conveyor_scheduler.config import SchedulerConfig
from conveyor_scheduler.core import Core
from conveyor_scheduler.store import Store
from tests.harness import Cluster
from tests.streams import RawWorkerStream

ACTIVE, QUEUED = task_pb2.TASK_STATE_ACTIVE, task_pb2.TASK_STATE_QUEUED


def _spec(name: str, priority: int = 0, queue: str = "nq") -> task_pb2.TaskSpec:
    return task_pb2.TaskSpec(name=name, queue=queue, priority=priority, payload=b"[]")


@contextlib.asynccontextmanager
async def in_process(redis_url: str) -> AsyncIterator[tuple[Core, Store]]:
    """A scheduler Core on real Redis, without a server: store calls with nothing racing them."""
    conn = AsyncRedis.from_url(redis_url)
    core = Core(SchedulerConfig(redis_url=redis_url, scheduler_id="inproc"), conn)
    try:
        yield core, core.store
    finally:
        await core.store.aclose()
        await conn.aclose()


@pytest.fixture
def db(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


async def _claim_ids(store: Store, names: Sequence[str], want: int = 100, queue: str = "nq") -> list[str]:
    claimed = await store.claim(queue, want, "w", 30_000, owner="s", names=names)
    return [rec[b"id"].decode() for rec in claimed.records]


def test_claim_takes_only_declared_names_in_priority_then_fifo_order(redis_url: str, db: redis.Redis) -> None:
    async def scenario() -> None:
        async with in_process(redis_url) as (core, store):
            plan = [("a", 0), ("b", 0), ("a", 5), ("b", 5), ("c", 0), ("a", 0), ("b", 9)]
            subs = await store.submit(core.submission.check_specs([_spec(n, p) for n, p in plan]))
            ids = {(i, n, p): s.id for i, ((n, p), s) in enumerate(zip(plan, subs, strict=True))}
            by = {key[0]: task_id for key, task_id in ids.items()}

            claimed = await store.claim("nq", 100, "w", 30_000, owner="s", names=["a"])
            got = [rec[b"id"].decode() for rec in claimed.records]
            assert got == [by[2], by[0], by[5]]  # priority 5 first, then FIFO among the zeros
            assert sorted(claimed.parked) == ["b", "c"] and claimed.parked_left and not claimed.cut
            assert db.smembers("cv:{q:nq}:pn") == {b"b", b"c"}
            assert db.hget(f"cv:{{q:nq}}:t:{by[1]}", "pk") == b"1"
            assert [db.hget(f"cv:{{q:nq}}:t:{i}", "o") for i in got] == [b"s"] * 3  # owned by the claiming stream

            # A task of a parked name submitted later queues behind the parked ones.
            (late,) = await store.submit(core.submission.check_specs([_spec("b", 5)]))
            assert await _claim_ids(store, ["b"], want=2) == [by[6], by[3]]  # 9 first, then the parked 5
            assert await _claim_ids(store, ["b"]) == [late.id, by[1]]
            assert db.smembers("cv:{q:nq}:pn") == {b"c"}
            assert db.hget(f"cv:{{q:nq}}:t:{by[1]}", "pk") is None

            # A generic worker (no names) takes anything, parked ones included.
            assert await _claim_ids(store, []) == [by[4]]
            assert db.exists("cv:{q:nq}:pn", "cv:{q:nq}:p:c") == 0

    asyncio.run(scenario())


def test_parked_tasks_merge_across_names_by_age_and_leave_on_cancel(redis_url: str, db: redis.Redis) -> None:
    async def scenario() -> None:
        async with in_process(redis_url) as (core, store):
            subs = await store.submit(core.submission.check_specs([_spec(n) for n in "xyxyz"]))
            ids = [s.id for s in subs]
            assert await _claim_ids(store, ["other"]) == []  # parks all five
            state, _ = await store.cancel("nq", ids[2])
            assert state == task_pb2.TASK_STATE_CANCELLED
            assert db.zscore("cv:{q:nq}:p:x", ids[2]) is None
            assert await _claim_ids(store, ["x", "y"]) == [ids[0], ids[1], ids[3]]  # oldest first across names
            state, _ = await store.cancel("nq", ids[4])  # the last parked one of its name: its set goes too
            assert db.exists("cv:{q:nq}:pn", "cv:{q:nq}:p:z") == 0

    asyncio.run(scenario())


def test_one_claim_parks_at_most_a_thousand_and_says_more_may_be_ready(redis_url: str, db: redis.Redis) -> None:
    async def scenario() -> None:
        async with in_process(redis_url) as (core, store):
            await store.submit(core.submission.check_specs([_spec("unknown")] * 2500))
            (mine,) = await store.submit(core.submission.check_specs([_spec("known")]))
            cuts = []
            while True:
                claimed = await store.claim("nq", 10, "w", 30_000, owner="s", names=["known"])
                cuts.append(claimed.cut)
                if claimed.records:
                    break
            assert cuts == [True, True, False]
            assert [rec[b"id"].decode() for rec in claimed.records] == [mine.id]
            assert db.zcard("cv:{q:nq}:p:unknown") == 2500

    asyncio.run(scenario())


def test_poll_with_task_names_and_the_waiting_reason(cluster: Cluster, redis_url: str) -> None:
    _, target = cluster.scheduler(redis_url)
    with Client(target) as client, grpc.insecure_channel(target) as channel:
        stub = task_service_pb2_grpc.TaskServiceStub(channel)
        old, new = (h.id for h in client.submit_many(
            [Call(n, [], {}, SubmitOptions(queue="pq")) for n in ("p.old", "p.new")]))
        poll = task_service_pb2.PollRequest(queues=["pq"], max_tasks=10, task_names=["p.old"])
        assert [t.task.id for t in stub.Poll(poll, timeout=10).tasks] == [old]
        task = client.get_task(new)
        assert TaskState(task.state) is TaskState.QUEUED
        assert "p.new" in task.waiting_reason and "do not declare" in task.waiting_reason
        assert client.get_task(old).waiting_reason == ""
        poll = task_service_pb2.PollRequest(queues=["pq"], max_tasks=10)  # no names: any
        (leased,) = stub.Poll(poll, timeout=10).tasks
        assert (leased.task.id, leased.task.waiting_reason) == (new, "")
        assert client.get_task(new).waiting_reason == ""


def test_sync_match_skips_a_worker_that_does_not_declare_the_name(cluster: Cluster, redis_url: str) -> None:
    _, target = cluster.scheduler(redis_url)
    stream = RawWorkerStream(target, "w-old", ["mq"], credit=5, task_names=["m.old"])
    with Client(target) as client:
        resp = client._stub.Submit(submit_request([Call(n, [], {}, SubmitOptions(queue="mq"))
                                                   for n in ("m.old", "m.new")]), timeout=10)
        assert [t.state for t in resp.tasks] == [ACTIVE, QUEUED]
        (lt,) = stream.take(1)
        assert lt.task.name == "m.old"
        generic = RawWorkerStream(target, "w-any", ["mq"], credit=5)  # declares no names: takes it
        (other,) = generic.take(1)
        assert other.task.id == resp.tasks[1].id
        stream.cancel()
        generic.cancel()
