"""A wake that never arrives (a replica died between storing a task and publishing its wake,
or pub/sub lost it): the periodic sweep finds the task in Redis and dispatch runs it."""

from __future__ import annotations

import asyncio

from redis.asyncio import Redis as AsyncRedis

from conveyor import Client
from conveyor.v1 import task_pb2
from conveyor_scheduler.config import Limits
from conveyor_scheduler.routing import Router
from conveyor_scheduler.store import Store
from conveyor_scheduler.validation import check_spec
from tests.harness import Cluster, connected


async def store_without_wake(redis_url: str) -> str:
    """Stores one task the way a replica does, and publishes nothing (that replica 'died')."""
    redis = AsyncRedis.from_url(redis_url)
    try:
        store = Store(redis, result_ttl_ms=60_000, default_timeout_ms=60_000)
        spec = task_pb2.TaskSpec(name="t.add", queue="default", payload=b'{"args": [20, 22], "kwargs": {}}')
        task = check_spec(spec, "t", limits=Limits(), router=Router(), now_ms=store.clock(),
                          default_timeout_ms=60_000, default_window_ms=0)
        (stored,) = await store.submit([task])  # no wake_origin: no wake is published
        assert stored.state == task_pb2.TASK_STATE_QUEUED
        return stored.id
    finally:
        await redis.aclose()


def test_a_task_whose_wake_was_lost_runs_after_the_sweep(cluster: Cluster, redis_url: str) -> None:
    sched, target = cluster.scheduler(redis_url, "--reaper-interval", "0.2")
    worker = cluster.worker(target)
    connected(sched, worker)
    with Client(target) as client:
        assert client.submit("t.add", [1, 1]).result(timeout=30) == 2  # the queue ran dry: known empty
        task_id = asyncio.run(store_without_wake(redis_url))
        assert client.handle(task_id).result(timeout=30) == 42
