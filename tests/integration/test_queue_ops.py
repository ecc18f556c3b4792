"""The operations surface against real schedulers and Redis: ListQueues depth and rates,
pause/resume across replicas, purge, ListTasks paging and filters, bulk cancel/retry."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator

import grpc
import pytest
import redis
from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp

from conveyor import Call, Client, SubmitOptions
from conveyor.v1 import admin_service_pb2, admin_service_pb2_grpc, task_pb2, task_service_pb2, task_service_pb2_grpc
from conveyor_scheduler.ids import created_ms, new_task_ids
from conveyor_scheduler.store import script_text
from tests.harness import Cluster, redis_client, wait_for

QUEUED, SCHEDULED, ACTIVE, SUCCEEDED, FAILED, CANCELLED, DEAD = 2, 1, 3, 4, 5, 6, 8


class Stubs:
    def __init__(self, target: str) -> None:
        self.channel = grpc.insecure_channel(target)
        self.admin = admin_service_pb2_grpc.AdminServiceStub(self.channel)
        self.tasks = task_service_pb2_grpc.TaskServiceStub(self.channel)

    def poll(self, queue: str, n: int, worker_id: str = "poller", wait: float = 5) -> list[task_pb2.LeasedTask]:
        leased: list[task_pb2.LeasedTask] = []
        while len(leased) < n:
            resp = self.tasks.Poll(task_service_pb2.PollRequest(
                queues=[queue], max_tasks=min(500, n - len(leased)), worker_id=worker_id,
                wait=Duration(seconds=int(wait))), timeout=wait + 5)
            if not resp.tasks:
                break
            leased.extend(resp.tasks)
        return leased

    def ack(self, leased: list[task_pb2.LeasedTask], fail: bool = False) -> None:
        acks = [task_pb2.TaskAck(task_id=lt.task.id, lease_token=lt.lease_token,
                                 **({"failure": task_pb2.TaskFailure(error=task_pb2.TaskError(type="Boom"))}
                                    if fail else {"result": task_pb2.TaskResult(data=b"1")}))
                for lt in leased]
        for i in range(0, len(acks), 1000):
            self.tasks.Ack(task_service_pb2.AckRequest(acks=acks[i:i + 1000]), timeout=30)

    def queue(self, name: str) -> admin_service_pb2.QueueStats:
        (stats,) = self.admin.ListQueues(admin_service_pb2.ListQueuesRequest(queue=name), timeout=30).queues
        return stats

    def walk(self, flt: admin_service_pb2.TaskFilter, page_size: int = 100) -> Iterator[list[task_pb2.Task]]:
        cursor = ""
        while True:
            resp = self.admin.ListTasks(admin_service_pb2.ListTasksRequest(filter=flt, page_size=page_size,
                                                                           cursor=cursor), timeout=30)
            yield list(resp.tasks)
            if not resp.next_cursor:
                return
            cursor = resp.next_cursor

    def ids(self, flt: admin_service_pb2.TaskFilter, page_size: int = 100) -> list[str]:
        return [t.id for page in self.walk(flt, page_size) for t in page]

    def states(self, ids: list[str]) -> dict[str, int]:
        resp = self.tasks.GetResults(task_service_pb2.GetResultsRequest(task_ids=ids), timeout=30)
        return {r.task_id: r.state for r in resp.results}


@pytest.fixture
def stubs(scheduler: str) -> Iterator[Stubs]:
    s = Stubs(scheduler)
    yield s
    s.channel.close()


def test_list_queues_reports_depth_by_state(stubs: Stubs, client: Client) -> None:
    dying = client.submit("t.fail", queue="depth", max_retries=1, retry_backoff=0.001).id
    for _ in range(2):  # two failed attempts that ask for a retry: one retry, then DEAD
        (lt,) = wait_for(lambda: stubs.poll("depth", 1, wait=1), what="the failing task")
        assert lt.task.id == dying
        stubs.tasks.Ack(task_service_pb2.AckRequest(acks=[task_pb2.TaskAck(
            task_id=dying, lease_token=lt.lease_token,
            failure=task_pb2.TaskFailure(error=task_pb2.TaskError(type="Boom"), retry=True))]), timeout=10)
    running = [client.submit("t.add", [i, i], queue="depth").id for i in range(3)]
    client.submit("t.add", [1, 1], queue="depth", countdown=3600)
    assert [lt.task.id for lt in stubs.poll("depth", 3)] == running
    for p in (0, 0, 3, 9, 9):
        client.submit("t.add", [1, 1], queue="depth", priority=p)
    stats = stubs.queue("depth")
    assert list(stats.queued_by_priority) == [2, 0, 0, 1, 0, 0, 0, 0, 0, 2]
    assert (stats.queued, stats.scheduled, stats.active, stats.dead) == (5, 1, 3, 1)
    assert not stats.paused and not stats.unserved_names
    assert 0 <= stats.oldest_queued_age.ToMilliseconds() < 60_000
    one = stats.windows[0]
    assert [w.minutes for w in stats.windows] == [1, 5, 15]
    assert (one.submitted, one.started, one.retried, one.dead) == (10, 5, 1, 1)
    assert 50 <= one.covered.ToSeconds() <= 60


def test_cancelled_queued_tasks_leave_the_depth(stubs: Stubs, client: Client) -> None:
    handles = [client.submit("t.add", [i, i], queue="tomb") for i in range(10)]
    for h in handles[:4]:
        assert client.cancel(h.id).name == "CANCELLED"
    assert stubs.queue("tomb").queued == 6
    leased = stubs.poll("tomb", 10, wait=1)
    assert sorted(lt.task.id for lt in leased) == sorted(h.id for h in handles[4:])
    stats = stubs.queue("tomb")
    assert (stats.queued, stats.active) == (0, 6)


def test_rates_after_a_known_load(stubs: Stubs, client: Client) -> None:
    ok = client.submit_many([Call("t.add", [i, i], {}, SubmitOptions(queue="rates")) for i in range(1000)])
    bad = client.submit_many([Call("t.fail", [i], {}, SubmitOptions(queue="rates")) for i in range(100)])
    leased = stubs.poll("rates", 1100)
    assert len(leased) == 1100
    bad_ids = {h.id for h in bad}
    stubs.ack([lt for lt in leased if lt.task.id not in bad_ids])
    stubs.ack([lt for lt in leased if lt.task.id in bad_ids], fail=True)
    stats = stubs.queue("rates")
    for w in stats.windows:
        assert (w.submitted, w.started, w.succeeded, w.failed, w.retried) == (1100, 1100, 1000, 100, 0), w
        assert 0 < w.wait_p50.ToNanoseconds() <= w.wait_p95.ToNanoseconds()
        assert 0 < w.run_p50.ToNanoseconds() <= w.run_p95.ToNanoseconds()
    assert len(ok) == 1000


def test_history_counts_each_queue_minute_by_minute_and_their_sum(stubs: Stubs, client: Client,
                                                                     redis_url: str) -> None:
    for queue, n_ok, n_bad in (("hist-a", 300, 20), ("hist-b", 50, 5)):
        client.submit_many([Call("t.add", [i, i], {}, SubmitOptions(queue=queue)) for i in range(n_ok + n_bad)])
        leased = stubs.poll(queue, n_ok + n_bad)
        stubs.ack(leased[:n_ok])
        stubs.ack(leased[n_ok:], fail=True)
    history = client.admin.queue_history(minutes=5)
    assert {"hist-a", "hist-b"} <= set(history.queues)
    for points in [*history.queues.values(), history.total]:
        assert len(points) == 5
        assert all(p.minutes == 1 for p in points)
        assert [p.start for p in points] == [points[0].start + 60 * i for i in range(5)]
        assert all(p.covered == 60 for p in points[:-1]) and 0 <= points[-1].covered <= 60
        assert points[-1].start <= time.time() < points[-1].start + 60
    for queue, n_ok, n_bad in (("hist-a", 300, 20), ("hist-b", 50, 5)):
        points = history.queues[queue]
        assert sum(p.succeeded for p in points) == n_ok and sum(p.failed for p in points) == n_bad
        assert sum(p.started for p in points) == n_ok + n_bad
        busy = [p for p in points if p.started]
        assert busy and all(p.wait_p95 is not None and p.wait_p95 >= (p.wait_p50 or 0) for p in busy)
    for i, point in enumerate(history.total):
        assert point.succeeded == sum(q[i].succeeded for q in history.queues.values())
        assert point.failed == sum(q[i].failed for q in history.queues.values())
    one = client.admin.queue_history("hist-b", minutes=60)
    assert list(one.queues) == ["hist-b"] and len(one.queues["hist-b"]) == 60
    assert sum(p.succeeded for p in one.total) == 50
    # The buckets outlive the hour the call reads.
    r = redis_client(redis_url)
    bucket_keys = list(r.scan_iter(match="cv:{q:hist-b}:m:*"))
    assert bucket_keys and all(60 * 60_000 < r.pttl(k) <= 3_670_000 for k in bucket_keys)
    r.close()


def test_pause_stops_dispatch_on_every_replica_and_resume_keeps_order(cluster: Cluster, redis_url: str) -> None:
    _, a = cluster.scheduler(redis_url, name="a")
    _, b = cluster.scheduler(redis_url, name="b")
    worker = cluster.worker(b, queues="held,other")
    sa, sb = Stubs(a), Stubs(b)
    with Client(a) as ca, Client(b) as cb:
        ca.submit("t.add", [0, 0], queue="held").result(timeout=30)  # the queue exists; the worker is up
        assert sb.admin.PauseQueue(admin_service_pb2.PauseQueueRequest(queue="held")).was_paused is False
        assert sa.admin.PauseQueue(admin_service_pb2.PauseQueueRequest(queue="held")).was_paused is True
        held = [ca.submit("t.add", [i, i], queue="held", priority=i % 3) for i in range(30)]
        held += [cb.submit("t.add", [i, i], queue="held", priority=i % 3) for i in range(30, 60)]
        # the same worker, on the same replicas, keeps running another queue's tasks meanwhile
        for i in range(20):
            assert cb.submit("t.add", [i, 1], queue="other").result(timeout=30) == i + 1
        assert sa.poll("held", 1, wait=1) == [] and sb.poll("held", 1, wait=1) == []
        stats = sb.queue("held")
        assert stats.paused and stats.queued == 60 and stats.active == 0
        assert all(state == QUEUED for state in sa.states([h.id for h in held]).values())
        worker.terminate()
        assert sb.admin.ResumeQueue(admin_service_pb2.ResumeQueueRequest(queue="held")).was_paused is True
        leased = sa.poll("held", 60)
        expected = sorted(held, key=lambda h: -(int(held.index(h)) % 3))  # stable: FIFO within a priority
        assert [lt.task.id for lt in leased] == [h.id for h in expected]
        assert not sa.queue("held").paused
    sa.channel.close()
    sb.channel.close()


def test_purge_of_100k_keeps_redis_answering(cluster: Cluster, redis_url: str) -> None:
    _, target = cluster.scheduler(redis_url)
    stubs = Stubs(target)
    ids: list[str] = []
    with Client(target) as client:
        for start in range(0, 100_000, 10_000):
            ids += [h.id for h in client.submit_many(
                [Call("t.add", [i, i], {}, SubmitOptions(queue="big", priority=i % 10))
                 for i in range(start, start + 10_000)])]
        ids += [h.id for h in client.submit_many(
            [Call("t.add", [i, i], {}, SubmitOptions(queue="big", countdown=3600)) for i in range(1000)])]
    r = redis.Redis.from_url(redis_url)
    # How long Redis itself was blocked: every command of 10 ms or more lands in the slow log
    # with its own execution time, which a busy machine does not stretch the way it stretches
    # a PING's round trip (the round trip under 50 ms is measured by `make bench`, on a quiet machine).
    slower_than = r.config_get("slowlog-log-slower-than")["slowlog-log-slower-than"]
    r.config_set("slowlog-log-slower-than", 10_000)
    r.slowlog_reset()
    worst = 0.0
    done = threading.Event()
    result: dict[str, object] = {}

    def purge() -> None:
        try:
            result["purged"] = stubs.admin.PurgeQueue(admin_service_pb2.PurgeQueueRequest(queue="big"),
                                                      timeout=300).purged
        finally:
            done.set()

    thread = threading.Thread(target=purge)
    started = time.perf_counter()
    thread.start()
    pings = 0
    while not done.is_set():
        t0 = time.perf_counter()
        r.ping()
        worst = max(worst, time.perf_counter() - t0)
        pings += 1
    thread.join()
    took = time.perf_counter() - started
    slow = r.slowlog_get(1000)
    r.config_set("slowlog-log-slower-than", slower_than)
    assert result["purged"] == 101_000, result
    blocked = max((entry["duration"] for entry in slow), default=0) / 1000
    assert blocked < 50, f"a command blocked Redis for {blocked:.1f} ms during the purge: {slow[0]['command'][:80]!r}"
    pipe = r.pipeline(transaction=False)
    prefix = "cv:{q:big}:t:"
    for task_id in ids:
        pipe.hget(prefix + task_id, "st")
    states = pipe.execute()
    assert all(s == b"6" for s in states), {s for s in states}
    stats = stubs.queue("big")
    assert (stats.queued, stats.scheduled) == (0, 0)
    assert stats.windows[0].cancelled == 101_000
    print(f"purge of 101,000 tasks: {took:.2f} s, longest command {blocked:.1f} ms, "
          f"worst PING {worst * 1000:.1f} ms over {pings} pings")
    stubs.channel.close()


def test_list_tasks_walk_sees_each_task_once_while_tasks_arrive(stubs: Stubs, client: Client) -> None:
    first = [h.id for h in client.submit_many([Call("t.add", [i, i], {}, SubmitOptions(queue="walk"))
                                               for i in range(2500)])]
    stop = threading.Event()

    def keep_submitting() -> None:
        while not stop.is_set():
            client.submit_many([Call("t.add", [0, 0], {}, SubmitOptions(queue="walk"))] * 20)

    thread = threading.Thread(target=keep_submitting)
    thread.start()
    try:
        pages = list(stubs.walk(admin_service_pb2.TaskFilter(queue="walk"), page_size=97))
    finally:
        stop.set()
        thread.join()
    seen = [t.id for page in pages for t in page]
    assert len(seen) == len(set(seen))
    assert set(first) <= set(seen)
    assert seen[-2500:] == first[::-1]  # newest first; the ones that arrived during the walk come first
    assert all(len(page) <= 97 for page in pages)
    assert all(t.payload == b"" for page in pages for t in page)  # with_payloads off


def test_list_tasks_filters_combine(stubs: Stubs, client: Client) -> None:
    early = [client.submit(n, queue="mix").id for n in ("a.one", "a.two", "b.one")]
    stored = time.time() * 1000  # the early ones were stored before this; mid is a later ms
    wait_for(lambda: time.time() * 1000 > stored + 2)
    mid = Timestamp()
    mid.FromMilliseconds(int(time.time() * 1000))
    wait_for(lambda: time.time() * 1000 > mid.ToMilliseconds() + 2)
    late = [client.submit(n, queue="mix").id for n in ("a.one", "a.two", "b.one", "a.one")]
    other = client.submit("a.one", queue="mix2").id
    leased = stubs.poll("mix", 2, worker_id="w1")  # the two oldest: early a.one, a.two
    assert [lt.task.id for lt in leased] == early[:2]
    stubs.ack(leased[:1], fail=True)

    def ids(**kw: object) -> list[str]:
        return stubs.ids(admin_service_pb2.TaskFilter(**kw))  # type: ignore[arg-type]

    assert ids(queue="mix") == (early + late)[::-1]
    assert ids(name="a.one") == [other, late[3], late[0], early[0]]
    assert ids(queue="mix", name_prefix="a.") == [late[3], late[1], late[0], early[1], early[0]]
    assert ids(queue="mix", name="a.one", states=[QUEUED]) == [late[3], late[0]]
    assert ids(queue="mix", worker_id="w1") == [early[1], early[0]]
    assert ids(queue="mix", worker_id="w1", states=[FAILED]) == [early[0]]
    assert ids(queue="mix", submitted_after=mid) == late[::-1]
    assert ids(queue="mix", submitted_before=mid) == early[::-1]
    assert ids(queue="mix", submitted_before=mid, name_prefix="b.") == [early[2]]
    # every queue, merged newest first, across pages of 2
    assert stubs.ids(admin_service_pb2.TaskFilter(name_prefix="a."), page_size=2) == [
        other, late[3], late[1], late[0], early[1], early[0]]


def test_a_finished_task_leaves_the_index_with_its_record(cluster: Cluster, redis_url: str) -> None:
    _, target = cluster.scheduler(redis_url, "--result-ttl", "1")
    stubs = Stubs(target)
    with Client(target) as client:
        stays = client.submit("t.add", queue="ttl").id  # older: the trimming pass must look past it
        done = client.submit("t.add", queue="ttl", priority=9).id
    (lt,) = stubs.poll("ttl", 1)
    assert lt.task.id == done
    stubs.ack([lt])
    flt = admin_service_pb2.TaskFilter(queue="ttl")
    assert stubs.ids(flt) == [done, stays]
    r = redis_client(redis_url)
    wait_for(lambda: r.exists(f"cv:{{q:ttl}}:t:{done}") == 0, what="the record to lapse")
    assert stubs.ids(flt) == [stays]
    # the reaper trims the index of an idle queue too: the entry itself is deleted
    wait_for(lambda: r.xlen("cv:{q:ttl}:x") == 1, timeout=20, what="the index trimmed")
    assert r.xrange("cv:{q:ttl}:x")[0][1] == {b"i": stays.encode()}
    stubs.channel.close()


def test_bulk_cancel_and_retry_act_on_exactly_the_matching_set(stubs: Stubs, client: Client) -> None:
    charge = [client.submit("billing.charge", [i], queue="bulk").id for i in range(6)]
    refund = [client.submit("billing.refund", [i], queue="bulk").id for i in range(3)]
    leased = {lt.task.id: lt for lt in stubs.poll("bulk", 9)}
    stubs.ack([leased[i] for i in charge[:4] + refund[:1]], fail=True)   # 4 charges and 1 refund FAILED
    stubs.ack([leased[i] for i in charge[4:]])                           # 2 charges SUCCEEDED
    late = [client.submit("billing.charge", [i], queue="bulk").id for i in range(3)]  # QUEUED
    flt = admin_service_pb2.TaskFilter(queue="bulk", states=[FAILED], name="billing.charge")
    before = stubs.states(charge + refund + late)
    dry = stubs.admin.RetryTasks(admin_service_pb2.RetryTasksRequest(filter=flt, dry_run=True))
    assert (dry.matched, dry.retried) == (4, 0)
    assert stubs.states(charge + refund + late) == before
    done = stubs.admin.RetryTasks(admin_service_pb2.RetryTasksRequest(filter=flt))
    assert (done.matched, done.retried) == (4, 4)
    after = stubs.states(charge + refund + late)
    assert [after[i] for i in charge] == [QUEUED] * 4 + [SUCCEEDED] * 2
    assert after[refund[0]] == FAILED
    again = {lt.task.id: lt for lt in stubs.poll("bulk", 7)}  # the retried 4 and the late 3
    assert set(again) == set(charge[:4]) | set(late)
    assert all(again[i].task.attempt == 1 for i in charge[:4])
    stubs.ack([again[i] for i in charge[:4]])
    assert [stubs.states(charge)[i] for i in charge] == [SUCCEEDED] * 6
    # cancel: the late 3 are running (leased above); one more queued
    queued = client.submit("billing.charge", queue="bulk").id
    flt = admin_service_pb2.TaskFilter(queue="bulk", states=[QUEUED, ACTIVE], name="billing.charge")
    dry = stubs.admin.CancelTasks(admin_service_pb2.CancelTasksRequest(filter=flt, dry_run=True))
    assert (dry.matched, dry.cancelled, dry.stopping) == (4, 0, 0)
    done = stubs.admin.CancelTasks(admin_service_pb2.CancelTasksRequest(filter=flt))
    assert (done.matched, done.cancelled, done.stopping) == (4, 1, 3)
    assert stubs.states([queued])[queued] == CANCELLED
    assert stubs.queue("bulk").queued == 0
    stubs.ack([again[i] for i in late])  # they were asked to stop: a late success still ends CANCELLED
    assert set(stubs.states(late).values()) == {CANCELLED}


def test_a_cancelled_task_retried_runs_once(stubs: Stubs, client: Client) -> None:
    h = client.submit("t.add", [1, 2], queue="tomb2")
    assert client.cancel(h.id).name == "CANCELLED"
    done = stubs.admin.RetryTasks(admin_service_pb2.RetryTasksRequest(
        filter=admin_service_pb2.TaskFilter(queue="tomb2", states=[CANCELLED])))
    assert done.retried == 1
    assert stubs.queue("tomb2").queued == 1
    leased = stubs.poll("tomb2", 2, wait=1)
    assert [lt.task.id for lt in leased] == [h.id]
    assert stubs.queue("tomb2").queued == 0


def _code(call: object, request: object) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as info:
        call(request, timeout=10)  # type: ignore[operator]
    return info.value.code(), info.value.details()


def test_bad_input_is_refused_naming_the_field_and_changes_nothing(stubs: Stubs, client: Client) -> None:
    ids = [client.submit("t.add", queue="bad").id for _ in range(3)]
    a = stubs.admin
    f = admin_service_pb2.TaskFilter
    not_found = grpc.StatusCode.NOT_FOUND
    invalid = grpc.StatusCode.INVALID_ARGUMENT
    cases = [
        (a.ListQueues, admin_service_pb2.ListQueuesRequest(queue="nope"), not_found, "queue"),
        (a.ListQueues, admin_service_pb2.ListQueuesRequest(queue="no pe"), invalid, "queue"),
        (a.GetQueueHistory, admin_service_pb2.GetQueueHistoryRequest(queue="nope"), not_found, "queue"),
        (a.GetQueueHistory, admin_service_pb2.GetQueueHistoryRequest(minutes=61), invalid, "minutes"),
        (a.PauseQueue, admin_service_pb2.PauseQueueRequest(queue="nope"), not_found, "queue"),
        (a.ResumeQueue, admin_service_pb2.ResumeQueueRequest(queue="nope"), not_found, "queue"),
        (a.PurgeQueue, admin_service_pb2.PurgeQueueRequest(queue="nope"), not_found, "queue"),
        (a.PurgeQueue, admin_service_pb2.PurgeQueueRequest(), invalid, "queue"),
        (a.ListTasks, admin_service_pb2.ListTasksRequest(filter=f(queue="nope"), page_size=10), not_found,
         "filter.queue"),
        (a.ListTasks, admin_service_pb2.ListTasksRequest(filter=f(queue="bad"), page_size=0), invalid, "page_size"),
        (a.ListTasks, admin_service_pb2.ListTasksRequest(filter=f(queue="bad"), page_size=10**6), invalid,
         "page_size"),
        (a.ListTasks, admin_service_pb2.ListTasksRequest(filter=f(queue="bad"), page_size=10, cursor="bm9wZQ"),
         invalid, "cursor"),
        (a.ListTasks, admin_service_pb2.ListTasksRequest(filter=f(queue="bad"), page_size=10, cursor="%%%"),
         invalid, "cursor"),
        (a.ListTasks, admin_service_pb2.ListTasksRequest(
            filter=f(queue="bad", submitted_after=Timestamp(seconds=2000), submitted_before=Timestamp(seconds=1000)),
            page_size=10), invalid, "filter.submitted_before"),
        (a.ListTasks, admin_service_pb2.ListTasksRequest(filter=f(states=[0]), page_size=10), invalid,
         "filter.states[0]"),
        (a.ListTasks, admin_service_pb2.ListTasksRequest(filter=f(name="a", name_prefix="b"), page_size=10),
         invalid, "filter.name_prefix"),
        (a.ListTasks, admin_service_pb2.ListTasksRequest(filter=f(worker_id="bad id"), page_size=10), invalid,
         "filter.worker_id"),
        (a.CancelTasks, admin_service_pb2.CancelTasksRequest(filter=f(queue="bad")), invalid, "filter.states"),
        (a.CancelTasks, admin_service_pb2.CancelTasksRequest(filter=f(queue="bad", states=[QUEUED, FAILED])),
         invalid, "filter.states[1]"),
        (a.RetryTasks, admin_service_pb2.RetryTasksRequest(filter=f(queue="bad", states=[QUEUED])), invalid,
         "filter.states[0]"),
        (a.RetryTasks, admin_service_pb2.RetryTasksRequest(filter=f(queue="nope", states=[FAILED])), not_found,
         "filter.queue"),
    ]
    for call, request, code, field in cases:
        got, details = _code(call, request)
        assert (got, details.split(":")[0]) == (code, field), (request, details)
    # a cursor is bound to its filter: one made for another filter is refused
    first = a.ListTasks(admin_service_pb2.ListTasksRequest(filter=f(queue="bad"), page_size=1))
    assert first.next_cursor
    got, details = _code(a.ListTasks, admin_service_pb2.ListTasksRequest(
        filter=f(queue="bad", name="t.add"), page_size=1, cursor=first.next_cursor))
    assert got == invalid and details.startswith("cursor") and "another filter" in details
    tampered = first.next_cursor[:-2] + ("AA" if first.next_cursor[-2:] != "AA" else "BB")
    assert _code(a.ListTasks, admin_service_pb2.ListTasksRequest(filter=f(queue="bad"), page_size=1,
                                                                   cursor=tampered))[0] == invalid
    stats = stubs.queue("bad")
    assert (stats.queued, stats.paused) == (3, False)
    assert set(stubs.states(ids).values()) == {QUEUED}


def test_a_rare_match_deep_in_the_index_comes_after_short_pages(stubs: Stubs, client: Client) -> None:
    rare = client.submit("x.rare", queue="deep").id
    client.submit_many([Call("x.common", [i], {}, SubmitOptions(queue="deep")) for i in range(6000)])
    pages = list(stubs.walk(admin_service_pb2.TaskFilter(queue="deep", name="x.rare"), page_size=10))
    assert pages[0] == [] and len(pages) >= 2  # the first call spent its scan budget on the common ones
    assert [t.id for page in pages for t in page] == [rare]


def test_lib_lua_reads_the_creation_time_of_any_task_id(redis_url: str) -> None:
    """lib.lua's id_ms (the queue wait of a task without an index entry, and the oldest queued age)
    decodes Crockford base32 through Lua's base-32 digits; it must agree with ids.created_ms everywhere."""
    lib = script_text("queue_stats").split("\nlocal function main()")[0]
    probe = redis.Redis.from_url(redis_url).register_script(
        lib + "\nlocal out = {} for i = 5, #ARGV do out[#out + 1] = id_ms(ARGV[i]) end return out")
    rng = random.Random(5)
    ids = [i for _ in range(300) for i in new_task_ids(rng.randrange(1, 65536), 2, rng.randrange(2**48))]
    got = probe(keys=[f"k{i}" for i in range(14)], args=["p:", 0, 0, "cv", *ids])
    assert [int(v) for v in got] == [created_ms(i) for i in ids]
