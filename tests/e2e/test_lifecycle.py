"""The whole life of a task, with real workers: delays, retries, dead letters, expiry,
cancellation, dedup, time limits, watching, rate limits and the handler's context."""

from __future__ import annotations

import asyncio
import statistics
import time
from pathlib import Path

import grpc
import pytest

from conveyor import (
    AsyncClient,
    Call,
    Client,
    DeadLetters,
    FailedPrecondition,
    SubmitOptions,
    TaskCancelled,
    TaskExpired,
    TaskFailed,
    TaskState,
)
from conveyor.v1 import task_pb2, task_service_pb2, task_service_pb2_grpc
from tests.harness import Cluster, wait_for

APP = "tests.apps.lifecycle:app"


@pytest.fixture
def client(cluster: Cluster, scheduler: str) -> Client:
    cluster.worker(scheduler, APP, concurrency=16)
    return Client(scheduler)


def test_delayed_tasks_start_on_time(cluster: Cluster, scheduler: str) -> None:
    for n in range(2):
        cluster.worker(scheduler, APP, concurrency=32, name=f"w{n}")
    with Client(scheduler) as client:
        start = time.time() + 1.0
        calls = [Call("life.noop", [i], {}, SubmitOptions(countdown=start - time.time() + i * 0.002))
                 for i in range(1000)]
        handles = client.submit_many(calls)
        assert {h.state for h in handles[-10:]} == {TaskState.SCHEDULED}
        assert [h.result(timeout=60) for h in handles] == list(range(1000))
        late = sorted((t.started_at.ToMilliseconds() - t.eta.ToMilliseconds())
                      for t in (client.get_task(h.id) for h in handles))
    p50, p99 = statistics.median(late), late[int(len(late) * 0.99) - 1]
    print(f"\ndelayed tasks: 1000 started, lateness p50 {p50:.0f} ms, p99 {p99:.0f} ms, max {late[-1]:.0f} ms")
    # A claim's "now" is read just before its script runs, so it can trail a promotion
    # that ran first by a millisecond or so; nothing starts earlier than that.
    assert min(late) >= -2, "a delayed task started before its eta"
    assert p99 < 100


def test_retries_follow_the_backoff_then_dead_letter_then_requeue(client: Client, tmp_path: Path) -> None:
    counter = tmp_path / "calls"
    handle = client.submit("life.flaky", [str(counter), 3], max_retries=2, retry_backoff=0.2)
    events = list(handle.watch(timeout=30))
    assert [e.state for e in events][-1] is TaskState.DEAD
    scheduled = [e for e in events if e.state is TaskState.SCHEDULED]
    queued = [e for e in events if e.state is TaskState.QUEUED and e.attempt > 0]
    delays = [q.at - s.at for s, q in zip(scheduled, queued, strict=True)]
    assert len(delays) == 2
    for k, delay in enumerate(delays):  # equal jitter: between half and all of 0.2 * 2^k
        nominal = 0.2 * 2**k
        assert nominal / 2 - 0.02 <= delay <= nominal + 0.1, f"retry {k + 1} waited {delay:.3f}s"
    with pytest.raises(TaskFailed) as err:
        handle.result(timeout=5)
    assert (err.value.state, err.value.error_type) == ("DEAD", "ConnectionError")
    dead, total = client.admin.list_dead_letters("default")
    assert total == 1 and dead[0].id == handle.id and dead[0].attempt == 3
    assert client.admin.requeue_dead_letters("default", [handle.id]) == 1
    assert handle.result(timeout=30) == 4  # the fourth call succeeds
    assert client.admin.list_dead_letters("default").total == 0


def test_retry_for_and_explicit_retry(client: Client, tmp_path: Path) -> None:
    no_retry = client.submit("life.not_retryable", max_retries=5)
    with pytest.raises(TaskFailed) as err:
        no_retry.result(timeout=30)
    assert (err.value.state, err.value.error_type, no_retry.info().attempt) == ("FAILED", "KeyError", 1)
    later = client.submit("life.retry_later", [str(tmp_path / "c")], max_retries=1)
    assert later.result(timeout=30) == "done"
    assert later.info().attempt == 2


def test_purge_dead_letters(client: Client, scheduler: str) -> None:
    handles = client.submit_many([Call("life.always_fails", [], {}, SubmitOptions(max_retries=1, retry_backoff=0))
                                  for _ in range(4)])
    for h in handles:
        with pytest.raises(TaskFailed):
            h.result(timeout=30)
    every = client.admin.list_dead_letters("default")
    assert every.total == 4 and {t.id for t in every.tasks} == {h.id for h in handles}
    assert client.admin.list_dead_letters("default", limit=2, offset=1) == DeadLetters(every.tasks[1:3], 4)
    assert client.admin.purge_dead_letters("default", [handles[0].id]) == 1
    with pytest.warns(DeprecationWarning, match=r"Client.purge_dead is deprecated: use .admin.purge_dead_letters"):
        assert client.purge_dead("default", [handles[1].id]) == 1  # the old name still works

    async def the_rest() -> DeadLetters:  # the async client's admin: the same calls, awaited
        async with AsyncClient(scheduler) as aclient:
            assert await aclient.admin.purge_dead_letters("default") == 2
            return await aclient.admin.list_dead_letters("default")

    assert asyncio.run(the_rest()) == DeadLetters([], 0)


def test_expired_tasks_never_run(cluster: Cluster, scheduler: str, tmp_path: Path) -> None:
    with Client(scheduler) as client:
        queued = client.submit("life.noop", [1], expires=0.3)
        delayed = client.submit("life.noop", [2], countdown=0.1, expires=0.3)
        fresh = client.submit("life.noop", [3], expires=3600)
        wait_for(lambda: _all_past(client, [queued.id, delayed.id]),
                 what="the expiry times to pass")
        cluster.worker(scheduler, APP)
        for h in (queued, delayed):
            with pytest.raises(TaskExpired):
                h.result(timeout=30)
            assert h.info().attempt == 0  # it never ran
        assert fresh.result(timeout=30) == 3


def _all_past(client: Client, ids: list[str]) -> bool:
    return all(client.get_task(i).expires_at.ToMilliseconds() < time.time() * 1000 for i in ids)


def test_cancel_queued_scheduled_and_running(client: Client, tmp_path: Path) -> None:
    scheduled = client.submit("life.noop", [1], countdown=60)
    assert scheduled.cancel() is TaskState.CANCELLED
    for name in ("life.async_forever", "life.cooperative"):
        started = tmp_path / name
        handle = client.submit(name, [str(started)])
        wait_for(started.exists, what=f"{name} to start")
        assert handle.cancel() is TaskState.ACTIVE  # asked to stop through its worker
        with pytest.raises(TaskCancelled):
            handle.result(timeout=10)
        assert handle.info().cancel_requested
    with pytest.raises(TaskCancelled):
        scheduled.result(timeout=1)
    assert scheduled.cancel() is TaskState.CANCELLED  # cancelling twice is harmless
    done = client.submit("life.noop", [1])
    assert done.result(timeout=30) == 1
    with pytest.raises(FailedPrecondition, match="already finished as SUCCEEDED"):
        done.cancel()


def test_dedup_returns_the_existing_task(client: Client) -> None:
    first = client.submit("life.noop", ["once"], idempotency_key="order-42")
    again = client.submit("life.noop", ["twice"], idempotency_key="order-42")
    assert again.id == first.id
    assert first.result(timeout=30) == "once"
    other = client.submit("life.noop", ["other"], idempotency_key="order-43")
    assert other.id != first.id


def test_time_limits(client: Client) -> None:
    check_time_limits(client)


def test_asyncio_loop_runs_the_services_too(cluster: Cluster, redis_url: str) -> None:
    """Every other test runs the services on uvloop (the default where installed); the
    standard loop stays supported, timers included."""
    default, _ = cluster.scheduler(redis_url, name="default-loop")
    sched, target = cluster.scheduler(redis_url, "--loop", "asyncio")
    worker = cluster.worker(target, APP, "--loop", "asyncio", concurrency=16)
    with Client(target) as client:
        check_time_limits(client)
        delayed = client.submit("life.noop", [7], countdown=0.3)
        assert delayed.result(timeout=30) == 7
    assert "event loop: uvloop" in default.output()
    assert "event loop: asyncio" in sched.output()
    assert "event loop: asyncio" in worker.output()


def check_time_limits(client: Client) -> None:
    soft_async = client.submit("life.async_slow", [5], soft_timeout=0.2, timeout=10)
    soft_sync = client.submit("life.sync_soft", soft_timeout=0.2, timeout=10)
    hard_sync = client.submit("life.sync_stuck", [30], timeout=0.5)
    hard_async = client.submit("life.async_slow", [30], timeout=0.5)
    began = time.monotonic()
    outcomes = []
    for h in (soft_async, soft_sync, hard_sync, hard_async):
        with pytest.raises(TaskFailed) as err:
            h.result(timeout=30)
        outcomes.append(err.value.error_type)
    assert outcomes == ["SoftTimeLimitExceeded", "SoftTimeLimitExceeded", "TimeLimitExceeded", "TimeLimitExceeded"]
    assert time.monotonic() - began < 10  # nobody waited for the 30 s sleeps


def test_watch_streams_every_state_change(client: Client, tmp_path: Path) -> None:
    handle = client.submit("life.flaky", [str(tmp_path / "c"), 1], max_retries=1, retry_backoff=0.1)
    states = [(e.state.name, e.attempt) for e in handle.watch(timeout=30)]
    # The first event is the state when watching began; afterwards every change in order.
    tail = [("SCHEDULED", 1), ("QUEUED", 1), ("ACTIVE", 2), ("SUCCEEDED", 2)]
    assert states[-4:] == tail, states


def test_handler_context(client: Client) -> None:
    handle = client.submit("life.context", queue="default", headers={"tenant": "acme"})
    ctx = handle.result(timeout=30)
    assert ctx == {"id": handle.id, "attempt": 1, "queue": "default", "headers": {"tenant": "acme"},
                   "name": "life.context", "has_deadline": True}


def test_rate_limit_holds_across_workers_and_replicas(cluster: Cluster, redis_url: str) -> None:
    _, a = cluster.scheduler(redis_url, name="replica-a")
    _, b = cluster.scheduler(redis_url, name="replica-b")
    for n, target in enumerate((a, b, a)):
        cluster.worker(target, APP, concurrency=8, name=f"w{n}")
    with Client(a) as client:
        handles = client.submit_many([Call("life.noop", [i], {}, SubmitOptions(rate_limit="50/s"))
                                      for i in range(700)])
        assert [h.result(timeout=60) for h in handles] == list(range(700))
        starts = sorted(client.get_task(h.id).started_at.ToMilliseconds() for h in handles)
    window_start = starts[0] + 1000  # skip the first second (the burst allowance)
    in_window = [s for s in starts if window_start <= s < window_start + 10_000]
    rate = len(in_window) / 10
    print(f"\nrate limit 50/s over 10 s with 3 workers on 2 replicas: {rate:.1f}/s")
    assert 45 <= rate <= 55


def test_bad_lifecycle_input(scheduler: str) -> None:
    with grpc.insecure_channel(scheduler) as ch:
        stub = task_service_pb2_grpc.TaskServiceStub(ch)
        cases = [
            (task_pb2.TaskSpec(name="t", rate_limit="lots"), "tasks[0].rate_limit"),
            (task_pb2.TaskSpec(name="t", rate_limit="0/s"), "tasks[0].rate_limit"),
            (task_pb2.TaskSpec(name="t", retry=task_pb2.RetryPolicy(max_retries=1, multiplier=0.5)),
             "tasks[0].retry.multiplier"),
            (task_pb2.TaskSpec(name="t", soft_timeout={"seconds": 10}, timeout={"seconds": 5}),
             "tasks[0].soft_timeout"),
        ]
        for spec, field in cases:
            with pytest.raises(grpc.RpcError) as err:
                stub.Submit(task_service_pb2.SubmitRequest(tasks=[spec]), timeout=10)
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and field in err.value.details()
        past = task_pb2.TaskSpec(name="life.noop", eta={"seconds": 1})  # 1970: runs now
        resp = stub.Submit(task_service_pb2.SubmitRequest(tasks=[past]), timeout=10)
        assert resp.tasks[0].state == task_pb2.TASK_STATE_QUEUED
