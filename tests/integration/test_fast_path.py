"""The sync-match fast path: a submit that finds an idle local worker is leased to it at once.

Over real gRPC with real workers: a plain task submitted while a worker on this replica has
free credit comes back ACTIVE and completes; delayed, rate-limited and expired tasks are
never matched; a task never overtakes ready tasks (the order of execution proves it); with
no worker on this replica it is QUEUED. submit.lua's rule itself ("match only while every
ready list of the queue is empty, and only up to the offered credit") is checked directly
against real Redis through an in-process Store, where nothing races.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import pytest
import redis
from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp
from redis.asyncio import Redis as AsyncRedis

from conveyor import Call, Client, SubmitOptions, TaskExpired, TaskState
from conveyor.common import submit_request
from conveyor.v1 import task_pb2, task_service_pb2, task_service_pb2_grpc
from conveyor_scheduler.config import SchedulerConfig
from conveyor_scheduler.core import Core
from conveyor_scheduler.sessions import WorkerSession
from conveyor_scheduler.store import Match
from tests.harness import Cluster, connected, worker_id

SCHEDULED, QUEUED, ACTIVE = (task_pb2.TASK_STATE_SCHEDULED, task_pb2.TASK_STATE_QUEUED,
                             task_pb2.TASK_STATE_ACTIVE)


def submit_states(client: Client, calls: list[Call | task_pb2.TaskSpec]) -> tuple[list[str], list[int]]:
    """Submits a batch through the raw stub: (ids, states) as the SubmitResponse reports them."""
    resp = client._stub.Submit(submit_request(calls), timeout=30)
    return [t.id for t in resp.tasks], [t.state for t in resp.tasks]


def record_call(log: Path, label: str, **options: object) -> Call:
    return Call("t.record", [str(log), label], {}, SubmitOptions(**options))  # type: ignore[arg-type]


# -- through real gRPC and real workers ----------------------------------------------------


def test_a_plain_submit_to_an_idle_worker_is_active_at_once(cluster: Cluster, redis_url: str) -> None:
    sched, target = cluster.scheduler(redis_url)
    worker = cluster.worker(target, concurrency=4)
    connected(sched, worker)
    with Client(target) as client:
        ids, states = submit_states(client, [Call("t.add", [i, 1]) for i in range(6)])
        assert states == [ACTIVE] * 4 + [QUEUED] * 2  # matched up to the worker's credit, in order
        assert client.results(ids, timeout=30) == [i + 1 for i in range(6)]
        for task_id in ids[:4]:
            task = client.get_task(task_id)
            assert (task.attempt, task.worker_id) == (1, worker_id(worker))
        # Every credit came back with its ack: a lone submit is matched again.
        (one,), (state,) = submit_states(client, [Call("t.add", [20, 22])])
        assert state == ACTIVE
        assert client.handle(one).result(timeout=30) == 42


def test_delayed_rate_limited_and_expired_tasks_are_never_matched(cluster: Cluster, redis_url: str) -> None:
    sched, target = cluster.scheduler(redis_url)
    worker = cluster.worker(target, concurrency=4)
    connected(sched, worker)
    with Client(target) as client:
        (delayed,), states = submit_states(client, [Call("t.add", [1, 1], {}, SubmitOptions(countdown=0.2))])
        assert states == [SCHEDULED]
        (limited,), states = submit_states(client, [Call("t.add", [2, 2], {}, SubmitOptions(rate_limit="100/s"))])
        assert states == [QUEUED]
        expired_spec = task_pb2.TaskSpec(name="t.add", payload=b'{"args": [3, 3]}', expires_at=Timestamp(seconds=1))
        (expired,), states = submit_states(client, [expired_spec])
        assert states == [QUEUED]
        assert client.results([delayed, limited], timeout=30) == [2, 4]
        with pytest.raises(TaskExpired):
            client.handle(expired).result(timeout=30)
        assert client.get_task(expired).attempt == 0  # it never ran
        # The same worker was matchable all along: a plain task is leased at submit.
        (plain,), states = submit_states(client, [Call("t.add", [4, 4])])
        assert states == [ACTIVE]
        assert client.handle(plain).result(timeout=30) == 8


def test_a_queue_rate_limit_turns_matching_off(cluster: Cluster, redis_url: str) -> None:
    sched, target = cluster.scheduler(redis_url, "--rate-limit", "queue:default=1000/s")
    worker = cluster.worker(target, concurrency=4)
    connected(sched, worker)
    with Client(target) as client:
        ids, states = submit_states(client, [Call("t.add", [i, i]) for i in range(3)])
        assert states == [QUEUED] * 3
        assert client.results(ids, timeout=30) == [0, 2, 4]


def test_a_batch_never_overtakes_its_own_queued_task(cluster: Cluster, redis_url: str, tmp_path: Path) -> None:
    """A rate-limited task that is ready now is QUEUED; the plain ones after it in the same
    batch must queue behind it although the worker has free credit."""
    sched, target = cluster.scheduler(redis_url)
    worker = cluster.worker(target, concurrency=1)
    connected(sched, worker)
    log = tmp_path / "order.txt"
    with Client(target) as client:
        calls = [record_call(log, "a", rate_limit="100/s"), record_call(log, "b"), record_call(log, "c")]
        ids, states = submit_states(client, calls)
        assert states == [QUEUED] * 3
        assert client.results(ids, timeout=30) == ["a", "b", "c"]
        assert log.read_text().split() == ["a", "b", "c"]


def test_submits_behind_ready_tasks_queue_in_priority_then_fifo_order(
        cluster: Cluster, redis_url: str, tmp_path: Path) -> None:
    sched, target = cluster.scheduler(redis_url)
    worker = cluster.worker(target, concurrency=1)
    connected(sched, worker)
    gate, log = tmp_path / "gate", tmp_path / "order.txt"
    with Client(target) as client:
        (blocker,), states = submit_states(client, [Call("t.wait_file", [str(gate), "blocker"])])
        assert states == [ACTIVE]  # the worker's only credit
        labels = [f"{p}-{i}" for i in range(4) for p in (0, 5, 9)]
        ids = []
        for label in labels:  # one submit each, all behind the busy worker
            (task_id,), states = submit_states(client, [record_call(log, label, priority=int(label[0]))])
            assert states == [QUEUED], label
            ids.append(task_id)
        gate.touch()
        # While those run, more submits race the returning credit: none may overtake a ready task.
        late = [f"0-{i}" for i in range(4, 10)]
        for label in late:
            ids += submit_states(client, [record_call(log, label)])[0]
        assert client.handle(blocker).result(timeout=30) == "blocker"
        client.results(ids, timeout=30)
    executed = log.read_text().split()
    expected = sorted(labels, key=lambda s: -int(s[0])) + late
    assert executed == expected


def test_without_a_worker_on_this_replica_a_submit_is_queued(cluster: Cluster, redis_url: str) -> None:
    sched_a, a = cluster.scheduler(redis_url, name="replica-a")
    _, b = cluster.scheduler(redis_url, name="replica-b")
    with Client(a) as via_a, Client(b) as via_b:
        ids, states = submit_states(via_a, [Call("t.add", [1, 2])])
        assert states == [QUEUED]  # nobody connected at all
        other_queue = cluster.worker(a, queues="other", name="other-queue")
        connected(sched_a, other_queue)
        more, states = submit_states(via_a, [Call("t.add", [3, 4])])
        assert states == [QUEUED]  # a worker, but not of this queue
        worker = cluster.worker(a, concurrency=8)
        connected(sched_a, worker)
        elsewhere, states = submit_states(via_b, [Call("t.add", [5, 6])])
        assert states == [QUEUED]  # the idle worker is on the other replica
        assert via_b.results(ids + more + elsewhere, timeout=30) == [3, 7, 11]


# -- submit.lua's rule, in-process against real Redis (nothing races here) -------------------


def _spec(priority: int = 0, **fields: object) -> task_pb2.TaskSpec:
    return task_pb2.TaskSpec(name="t.add", payload=b'{"args": [1, 2]}', priority=priority, **fields)  # type: ignore[arg-type]


def test_submit_lua_matches_only_while_every_ready_list_is_empty(redis_url: str) -> None:
    db = redis.Redis.from_url(redis_url)

    async def scenario() -> None:
        conn = AsyncRedis.from_url(redis_url)
        core = Core(SchedulerConfig(redis_url=redis_url, scheduler_id="inproc"), conn)
        store = core.store

        async def submit(queue: str, specs: list[task_pb2.TaskSpec], credit: int) -> list[tuple[int, bool]]:
            tasks = core.submission.check_specs([_with_queue(s, queue) for s in specs])
            match = [Match(queue, "w-1", credit, 30_000)] if credit else []
            subs = await store.submit(tasks, match)
            return [(s.state, bool(s.lease_token)) for s in subs]

        try:
            # Credit bounds the matches; the rest queue up.
            assert await submit("qa", [_spec()] * 3, 2) == [(ACTIVE, True), (ACTIVE, True), (QUEUED, False)]
            # A ready task of any priority stops matching, for a lower or a higher priority.
            assert await submit("qa", [_spec(9)], 5) == [(QUEUED, False)]
            assert await submit("qb", [_spec(9)], 0) == [(QUEUED, False)]
            assert await submit("qb", [_spec(0)], 5) == [(QUEUED, False)]
            # A delayed task is not ready: it neither matches nor blocks the match after it.
            future = Duration(seconds=60)
            assert await submit("qc", [_spec(countdown=future), _spec()], 5) == [(SCHEDULED, False), (ACTIVE, True)]
            # A not-matchable ready task (rate limited) blocks the rest of its batch.
            assert await submit("qd", [_spec(rate_limit="10/s"), _spec()], 5) == [(QUEUED, False), (QUEUED, False)]
            # A duplicate takes no credit and changes nothing.
            keyed = _spec(idempotency_key="k-1")
            check = core.submission.check_specs
            first = await store.submit(check([_with_queue(keyed, "qe")]), [Match("qe", "w-1", 1, 30_000)])
            again = await store.submit(check([_with_queue(keyed, "qe"), _with_queue(_spec(), "qe")]),
                                       [Match("qe", "w-1", 1, 30_000)])
            assert (first[0].state, again[0].duplicate, again[0].id) == (ACTIVE, True, first[0].id)
            assert (again[0].lease_token, again[1].state) == ("", ACTIVE)
            # What a match writes: the lease as claim.lua would, and the active set.
            rec = db.hgetall(f"cv:{{q:qe}}:t:{first[0].id}")
            assert (rec[b"st"], rec[b"at"], rec[b"w"], rec[b"lt"]) == (b"3", b"1", b"w-1",
                                                                     first[0].lease_token.encode())
            assert int(rec[b"le"]) == first[0].lease_expires_ms <= int(rec[b"dl"]) == first[0].deadline_ms
            assert db.zscore("cv:{q:qe}:a", first[0].id) == first[0].lease_expires_ms
            assert db.llen("cv:{q:qe}:r:0") == 0
        finally:
            await core.store.aclose()
            await conn.aclose()

    try:
        asyncio.run(scenario())
        assert db.llen("cv:{q:qa}:r:0") == 1 and db.llen("cv:{q:qa}:r:9") == 1
        assert db.zcard("cv:{q:qa}:a") == 2
    finally:
        db.close()


def test_attach_returns_once_the_hello_credit_is_settled(redis_url: str) -> None:
    """attach() (after which the scheduler logs "connected") waits for the dispatch round its
    wake began, so a submit right after it is matched even when that round's claim is slow."""

    async def scenario() -> None:
        conn = AsyncRedis.from_url(redis_url)
        core = Core(SchedulerConfig(redis_url=redis_url, scheduler_id="inproc"), conn)
        real_claim, claims = core.store.claim, []

        async def slow_claim(*args: object, **kwargs: object) -> object:
            claims.append(args)
            await asyncio.sleep(0.3)  # the claim holds the session's credit meanwhile
            return await real_claim(*args, **kwargs)  # type: ignore[arg-type]

        core.store.claim = slow_claim  # type: ignore[method-assign]
        session = WorkerSession("w-1", ("qa",), credit=1)
        try:
            await core.dispatcher.attach(session)
            assert len(claims) == 1 and session.credit == 1  # the round ran, found nothing, gave it back
            offers = core.dispatcher.offers(core.submission.check_specs([_with_queue(_spec(), "qa")]))
            assert [(m.worker_id, m.credit) for m, _ in offers.values()] == [("w-1", 1)]
        finally:
            await core.dispatcher.close()
            await core.store.aclose()
            await conn.aclose()

    asyncio.run(scenario())


def _with_queue(spec: task_pb2.TaskSpec, queue: str) -> task_pb2.TaskSpec:
    out = task_pb2.TaskSpec()
    out.CopyFrom(spec)
    out.queue = queue
    return out


def test_submit_states_through_the_raw_stub_without_a_worker(scheduler: str) -> None:
    with grpc.insecure_channel(scheduler) as ch:
        stub = task_service_pb2_grpc.TaskServiceStub(ch)
        resp = stub.Submit(task_service_pb2.SubmitRequest(tasks=[_spec(), _spec(countdown=Duration(seconds=60))]),
                           timeout=30)
        assert [t.state for t in resp.tasks] == [QUEUED, SCHEDULED]
        assert TaskState(resp.tasks[0].state) is TaskState.QUEUED
