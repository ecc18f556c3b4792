"""Worker control end to end: AdminService DrainWorker, ShutdownWorker and SetConcurrency
sent to one scheduler replica reach a worker process whose stream another replica holds."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import grpc

from conveyor import Call, Client, TaskState
from conveyor.v1 import admin_service_pb2, admin_service_pb2_grpc
from tests.harness import Cluster, CompletionCounter, Proc, wait_for, worker_id

FAST = ("--lease-ttl", "2", "--heartbeat-interval", "0.5")
APP = "tests.apps.control:app"


def admin(target: str) -> admin_service_pb2_grpc.AdminServiceStub:
    return admin_service_pb2_grpc.AdminServiceStub(grpc.insecure_channel(target))


def entry(target: str, proc: Proc) -> admin_service_pb2.Worker | None:
    try:
        return admin(target).GetWorker(admin_service_pb2.GetWorkerRequest(worker_id=worker_id(proc)),
                                       timeout=5).worker
    except grpc.RpcError as exc:
        if exc.code() == grpc.StatusCode.NOT_FOUND:
            return None
        raise


def started(folder: Path) -> dict[str, int]:
    """label -> pid of the worker that began it."""
    return {p.name.removesuffix(".started"): int(p.read_text() or 0) for p in folder.glob("*.started")
            if p.read_text()}


def hold(client: Client, folder: Path, labels: list[str]) -> list[str]:
    return [h.id for h in client.submit_many([Call("ctl.hold", [str(folder), label]) for label in labels])]


def two_replicas(cluster: Cluster, redis_url: str) -> tuple[str, str]:
    return cluster.scheduler(redis_url, *FAST, name="a")[1], cluster.scheduler(redis_url, *FAST, name="b")[1]


def test_drained_worker_finishes_what_it_holds_and_takes_nothing_new(
        cluster: Cluster, redis_url: str, tmp_path: Path) -> None:
    a, b = two_replicas(cluster, redis_url)
    drained = cluster.worker(a, APP, concurrency=2, name="drained")
    wait_for(lambda: entry(b, drained), 20, what="the worker registered")
    with Client(b) as client:
        first = hold(client, tmp_path, ["f0", "f1"])
        wait_for(lambda: len(started(tmp_path)) == 2, what="both slots busy")
        admin(b).DrainWorker(admin_service_pb2.DrainWorkerRequest(worker_id=worker_id(drained), reason="test"),
                             timeout=5)
        wait_for(lambda: entry(a, drained).draining, 10, what="the worker to confirm the drain")  # type: ignore[union-attr]
        other = cluster.worker(b, APP, concurrency=4, name="other")
        later = hold(client, tmp_path, ["l0", "l1", "l2"])
        wait_for(lambda: len(started(tmp_path)) == 5, 20, what="the later tasks to start")
        runs = started(tmp_path)
        assert {runs[label] for label in ("f0", "f1")} == {drained.popen.pid}
        assert {runs[label] for label in ("l0", "l1", "l2")} == {other.popen.pid}
        (tmp_path / "release").touch()
        assert [client.handle(i).result(timeout=20) for i in first + later] == ["f0", "f1", "l0", "l1", "l2"]
        assert {client.get_task(i).worker_id for i in first} == {worker_id(drained)}
        # Drained, it stays connected and heartbeating, and counts what it finished.
        wait_for(lambda: entry(b, drained).succeeded == 2, 10, what="the counts in a heartbeat")  # type: ignore[union-attr]
        e = entry(b, drained)
        assert e is not None and e.draining and drained.alive() and not e.active_task_ids


def test_shutdown_exits_zero_and_loses_nothing(
        cluster: Cluster, redis_url: str, tmp_path: Path, completions: Callable[[str], CompletionCounter]) -> None:
    a, b = two_replicas(cluster, redis_url)
    counter = completions(redis_url)
    leaving = cluster.worker(a, APP, "--prefetch", "2", concurrency=2, name="leaving")
    wait_for(lambda: entry(b, leaving), 20, what="the worker registered")
    with Client(b) as client:
        ids = hold(client, tmp_path, [f"t{i}" for i in range(8)])
        wait_for(lambda: len(started(tmp_path)) == 2, what="both slots busy")
        admin(b).ShutdownWorker(admin_service_pb2.ShutdownWorkerRequest(worker_id=worker_id(leaving)), timeout=5)
        wait_for(lambda: entry(b, leaving) is None or entry(b, leaving).draining,  # type: ignore[union-attr]
                 10, what="the worker to drain")
        cluster.worker(b, APP, concurrency=4, name="stays")
        (tmp_path / "release").touch()
        assert leaving.popen.wait(20) == 0
        assert sorted(client.handle(i).result(timeout=20) for i in ids) == sorted(f"t{i}" for i in range(8))
        tasks = [client.get_task(i) for i in ids]
        # (a prefetched lease handed back at the drain counts an attempt: those end as attempt 2)
        assert [t.state for t in tasks] == [TaskState.SUCCEEDED] * 8
        assert sum(t.worker_id == worker_id(leaving) for t in tasks) == 2
    wait_for(lambda: all(counter.counts[i] for i in ids), 10, what="every completion announced")
    assert {i: counter.counts[i] for i in ids} == dict.fromkeys(ids, 1)
    assert entry(a, leaving) is None


def test_set_concurrency_grows_and_shrinks_the_slots(cluster: Cluster, redis_url: str, tmp_path: Path) -> None:
    a, b = two_replicas(cluster, redis_url)
    worker = cluster.worker(a, APP, concurrency=2, name="scaled")
    wait_for(lambda: entry(b, worker), 20, what="the worker registered")
    with Client(b) as client:
        ids = hold(client, tmp_path, [f"t{i}" for i in range(10)])
        wait_for(lambda: len(started(tmp_path)) == 2, what="both slots busy")
        admin(b).SetConcurrency(admin_service_pb2.SetConcurrencyRequest(worker_id=worker_id(worker), concurrency=6),
                                timeout=5)
        asked = time.monotonic()
        wait_for(lambda: len(started(tmp_path)) == 6, 5, interval=0.01, what="six attempts at once")
        assert time.monotonic() - asked < 1.0
        wait_for(lambda: entry(b, worker).concurrency == 6, 5, what="the registry to show 6")  # type: ignore[union-attr]
        # Shrink to 2 while 6 run: they finish, then no more than 2 run at once.
        admin(a).SetConcurrency(admin_service_pb2.SetConcurrencyRequest(worker_id=worker_id(worker), concurrency=2),
                                timeout=5)
        wait_for(lambda: entry(b, worker).concurrency == 2, 5, what="the registry to show 2")  # type: ignore[union-attr]
        for label in started(tmp_path):
            (tmp_path / f"{label}.release").touch()
        wait_for(lambda: len(started(tmp_path)) == 8, 10, what="two more to start")
        beat = entry(b, worker).last_heartbeat.ToMilliseconds()  # type: ignore[union-attr]
        wait_for(lambda: entry(b, worker).last_heartbeat.ToMilliseconds() > beat + 1000,  # type: ignore[union-attr]
                 5, what="two more heartbeats")
        assert len(started(tmp_path)) == 8  # the 2 slots stay full: nothing else began
        (tmp_path / "release").touch()
        assert sorted(client.handle(i).result(timeout=20) for i in ids) == sorted(f"t{i}" for i in range(10))
