"""The worker registry (AdminService.ListWorkers/GetWorker) with two scheduler replicas on one
Redis and real worker processes: every replica lists the same fleet, and a worker that
vanishes leaves the registry within its lease TTL, even when its replica died too."""

from __future__ import annotations

import asyncio
import time

import grpc
import pytest
from redis.asyncio import Redis as AsyncRedis

from conveyor.v1 import admin_service_pb2, admin_service_pb2_grpc
from conveyor_scheduler.config import SchedulerConfig
from conveyor_scheduler.core import Core
from conveyor_scheduler.sessions import WorkerSession
from tests.harness import Cluster, wait_for, worker_id

FAST = ("--lease-ttl", "2", "--heartbeat-interval", "0.5")


def admin(target: str) -> admin_service_pb2_grpc.AdminServiceStub:
    return admin_service_pb2_grpc.AdminServiceStub(grpc.insecure_channel(target))


def listed(target: str, queue: str = "") -> dict[str, admin_service_pb2.Worker]:
    resp = admin(target).ListWorkers(admin_service_pb2.ListWorkersRequest(queue=queue), timeout=5)
    return {w.worker_id: w for w in resp.workers}


def test_every_replica_lists_the_same_workers(cluster: Cluster, redis_url: str) -> None:
    _, a = cluster.scheduler(redis_url, *FAST, "--scheduler-id", "rep-a", name="a")
    _, b = cluster.scheduler(redis_url, *FAST, "--scheduler-id", "rep-b", name="b")
    w1 = cluster.worker(a, concurrency=3, name="w1")
    w2 = cluster.worker(a, "tests.apps.basic:app", "--prefetch", "2", concurrency=2, queues="default,other", name="w2")
    w3 = cluster.worker(b, concurrency=1, queues="other", name="w3")
    ids = {worker_id(w) for w in (w1, w2, w3)}
    wait_for(lambda: set(listed(a)) == ids, 20, what="three workers listed")
    # Wait until a heartbeat refreshed each entry, so both reads show the same instant.
    wait_for(lambda: all(w.last_heartbeat.ToMilliseconds() > w.connected_at.ToMilliseconds()
                         for w in listed(b).values()), what="heartbeats")
    from_a, from_b = listed(a), listed(b)
    assert set(from_a) == set(from_b) == ids
    for wid in ids:
        x, y = from_a[wid], from_b[wid]
        assert (x.hostname, x.pid, x.sdk, list(x.queues), x.concurrency, x.prefetch, x.scheduler_id) == \
               (y.hostname, y.pid, y.sdk, list(y.queues), y.concurrency, y.prefetch, y.scheduler_id)
    w = from_b[worker_id(w2)]
    assert w.scheduler_id == "rep-a" and w.pid == w2.popen.pid and list(w.queues) == ["default", "other"]
    assert (w.concurrency, w.prefetch, w.draining) == (2, 2, False)
    assert w.sdk.startswith("conveyor-python/") and "t.add" in w.task_names
    assert w.HasField("started_at") and w.started_at.ToMilliseconds() <= w.connected_at.ToMilliseconds()
    assert w.expires_at.ToMilliseconds() > w.last_heartbeat.ToMilliseconds()
    assert from_a[worker_id(w3)].scheduler_id == "rep-b"
    assert set(listed(b, "other")) == {worker_id(w2), worker_id(w3)}
    got = admin(b).GetWorker(admin_service_pb2.GetWorkerRequest(worker_id=worker_id(w1)), timeout=5).worker
    assert got.worker_id == worker_id(w1) and got.concurrency == 3 and got.scheduler_id == "rep-a"


def test_vanished_workers_leave_within_the_lease_ttl(cluster: Cluster, redis_url: str) -> None:
    a_proc, a = cluster.scheduler(redis_url, *FAST, name="a")
    _, b = cluster.scheduler(redis_url, *FAST, name="b")
    on_a = cluster.worker(a, name="on-a")
    on_b = cluster.worker(b, name="on-b")
    keep = cluster.worker(b, name="keep")
    wait_for(lambda: len(listed(b)) == 3, 20, what="three workers listed")
    on_b.kill()  # its replica sees the stream break
    killed = time.monotonic()
    wait_for(lambda: worker_id(on_b) not in listed(a), 5, what="the killed worker to leave")
    assert time.monotonic() - killed < 2.5
    a_proc.kill()  # the replica and its worker die together: only the entry's TTL removes it
    on_a.kill()
    killed = time.monotonic()
    wait_for(lambda: worker_id(on_a) not in listed(b), 5, what="the orphaned entry to lapse")
    assert time.monotonic() - killed < 2.5  # lease TTL 2 s
    assert set(listed(b)) == {worker_id(keep)}


def test_bad_input_and_unknown_workers(cluster: Cluster, redis_url: str) -> None:
    _, target = cluster.scheduler(redis_url, *FAST)
    stub = admin(target)
    w = cluster.worker(target, name="w")
    wait_for(lambda: worker_id(w) in listed(target), 20, what="the worker listed")
    wid = worker_id(w)
    cases = [
        (stub.GetWorker, admin_service_pb2.GetWorkerRequest(worker_id=""), "worker_id"),
        (stub.GetWorker, admin_service_pb2.GetWorkerRequest(worker_id="bad id!"), "worker_id"),
        (stub.ListWorkers, admin_service_pb2.ListWorkersRequest(queue="no such/queue"), "queue"),
        (stub.DrainWorker, admin_service_pb2.DrainWorkerRequest(worker_id=""), "worker_id"),
        (stub.DrainWorker, admin_service_pb2.DrainWorkerRequest(worker_id=wid, reason="x" * 201), "reason"),
        (stub.ShutdownWorker, admin_service_pb2.ShutdownWorkerRequest(worker_id="a|b"), "worker_id"),
        (stub.SetConcurrency, admin_service_pb2.SetConcurrencyRequest(worker_id=wid, concurrency=0), "concurrency"),
        (stub.SetConcurrency, admin_service_pb2.SetConcurrencyRequest(worker_id=wid, concurrency=10_001),
         "concurrency"),
        (stub.SetConcurrency, admin_service_pb2.SetConcurrencyRequest(worker_id="", concurrency=2), "worker_id"),
    ]
    for method, request, field in cases:
        with pytest.raises(grpc.RpcError) as err:
            method(request, timeout=5)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, request
        assert err.value.details().startswith(f"{field}:"), err.value.details()
    for method, request in [
        (stub.GetWorker, admin_service_pb2.GetWorkerRequest(worker_id="nobody")),
        (stub.DrainWorker, admin_service_pb2.DrainWorkerRequest(worker_id="nobody")),
        (stub.ShutdownWorker, admin_service_pb2.ShutdownWorkerRequest(worker_id="nobody")),
        (stub.SetConcurrency, admin_service_pb2.SetConcurrencyRequest(worker_id="nobody", concurrency=2)),
    ]:
        with pytest.raises(grpc.RpcError) as err:
            method(request, timeout=5)
        assert err.value.code() == grpc.StatusCode.NOT_FOUND and err.value.details().startswith("worker_id:")
    entry = listed(target)[wid]  # nothing changed
    assert (entry.concurrency, entry.draining) == (4, False) and w.alive()



def test_a_burst_of_registry_updates_is_served(redis_url: str) -> None:
    """300 streams join and heartbeat at the same moment: every registry update goes through.
    They once took a pooled Redis connection each, and past redis-py's 100 the pool refused
    them, which broke those streams (the bench's 200 idle workers, at their first heartbeat)."""

    async def scenario() -> None:
        conn = AsyncRedis.from_url(redis_url)
        core = Core(SchedulerConfig(redis_url=redis_url, scheduler_id="inproc"), conn)
        sessions = [WorkerSession(f"w-{i}", ("burst",)) for i in range(300)]
        try:
            await asyncio.gather(*(core.registry.join(s) for s in sessions))
            await asyncio.gather(*(core.registry.beat(s) for s in sessions))
            assert len(await core.registry.list("burst")) == 300
        finally:
            await core.store.aclose()
            await conn.aclose()

    asyncio.run(scenario())
