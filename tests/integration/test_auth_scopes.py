"""Tokens scoped to queues, and the least-role cases, against a real scheduler process.

Every queue a request names is checked: each task's queue after routing (a batch with one
task outside the scope is refused whole, nothing stored), Poll's queues, the hello of
WorkerService.Connect, each message of a Pipeline stream, admin calls that name a queue
(one that would span every queue is refused), and calls by task id (the id's queue).
"""

from __future__ import annotations

import queue as queues
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from conveyor.v1 import admin_service_pb2 as admin
from conveyor.v1 import admin_service_pb2_grpc as admin_grpc
from conveyor.v1 import schedule_service_pb2 as sched
from conveyor.v1 import schedule_service_pb2_grpc as sched_grpc
from conveyor.v1 import task_pb2
from conveyor.v1 import task_service_pb2 as ts
from conveyor.v1 import task_service_pb2_grpc as ts_grpc
from conveyor.v1 import worker_service_pb2 as ws
from conveyor.v1 import worker_service_pb2_grpc as ws_grpc
from tests.auth_calls import auth_file, bearer
from tests.harness import Cluster

ADMIN, PRODUCER, WORKER, READER, SCOPED_ADMIN = "root-s3cret", "pay-s3cret", "wrk-s3cret", "read-s3cret", "ops-s3cret"
DENIED = grpc.StatusCode.PERMISSION_DENIED


class Stubs:
    def __init__(self, channel: grpc.Channel) -> None:
        self.tasks = ts_grpc.TaskServiceStub(channel)
        self.admin = admin_grpc.AdminServiceStub(channel)
        self.workers = ws_grpc.WorkerServiceStub(channel)
        self.schedules = sched_grpc.ScheduleServiceStub(channel)


@pytest.fixture
def stubs(cluster: Cluster, redis_url: str, tmp_path: Path) -> Iterator[Stubs]:
    path = auth_file(tmp_path / "tokens.toml", {
        ADMIN: ("root", ["admin"], None),
        PRODUCER: ("web", ["producer"], ["payments", "pay.*"]),
        WORKER: ("pay-worker", ["worker"], ["payments"]),
        READER: ("pay-dash", ["reader"], ["payments"]),
        SCOPED_ADMIN: ("pay-ops", ["admin"], ["payments"]),
    })
    _, target = cluster.scheduler(redis_url, "--auth-file", str(path), "--route", "billing.*=payments")
    with grpc.insecure_channel(target) as channel:
        yield Stubs(channel)


def refused(fn: object, request: object, secret: str) -> str:
    """Calls a unary stub method expecting PERMISSION_DENIED; returns its message."""
    with pytest.raises(grpc.RpcError) as err:
        fn(request, metadata=bearer(secret), timeout=10)  # type: ignore[operator]
    assert err.value.code() == DENIED, err.value  # type: ignore[attr-defined]
    details = err.value.details() or ""  # type: ignore[attr-defined]
    assert secret not in details
    return details


def spec(name: str, queue: str = "") -> task_pb2.TaskSpec:
    return task_pb2.TaskSpec(name=name, queue=queue)


def submit(stubs: Stubs, secret: str, *specs: task_pb2.TaskSpec) -> ts.SubmitResponse:
    return stubs.tasks.Submit(ts.SubmitRequest(tasks=specs), metadata=bearer(secret), timeout=10)


def test_a_batch_with_one_task_outside_the_scope_is_refused_whole(stubs: Stubs) -> None:
    details = refused(stubs.tasks.Submit, ts.SubmitRequest(tasks=[
        spec("a", "payments"), spec("billing.charge"), spec("b", "emails")]), PRODUCER)
    assert "tasks[2].queue is queue 'emails'" in details and "token 'web' (producer)" in details
    refused(stubs.tasks.Submit, ts.SubmitRequest(tasks=[spec("a", "payments"), spec("untouched")]), PRODUCER)
    listed = stubs.admin.ListQueues(admin.ListQueuesRequest(), metadata=bearer(ADMIN), timeout=10)
    assert list(listed.queues) == []  # nothing was stored: no queue even came to be
    # Routing decides the queue of a task that names none: billing.* goes to payments.
    done = submit(stubs, PRODUCER, spec("a", "payments"), spec("billing.charge"), spec("c", "pay.eu"))
    assert [t.queue for t in done.tasks] == ["payments", "payments", "pay.eu"]


def test_poll_and_calls_by_task_id_are_held_to_the_scope(stubs: Stubs) -> None:
    mine = submit(stubs, PRODUCER, spec("a", "payments")).tasks[0].id
    other = submit(stubs, ADMIN, spec("a", "emails")).tasks[0].id
    assert "queues[1] is queue 'emails'" in refused(
        stubs.tasks.Poll, ts.PollRequest(queues=["payments", "emails"]), WORKER)
    leased = stubs.tasks.Poll(ts.PollRequest(queues=["payments"]), metadata=bearer(WORKER), timeout=10).tasks
    assert [t.task.id for t in leased] == [mine]
    for fn, request in ((stubs.tasks.GetResult, ts.GetResultRequest(task_id=other)),
                        (stubs.tasks.GetTask, ts.GetTaskRequest(task_id=other)),
                        (stubs.tasks.Cancel, ts.CancelRequest(task_id=other))):
        assert "task_id is queue 'emails'" in refused(fn, request, PRODUCER)
    assert "task_ids[1] is queue 'emails'" in refused(
        stubs.tasks.GetResults, ts.GetResultsRequest(task_ids=[mine, other]), READER)
    with pytest.raises(grpc.RpcError) as err:
        list(stubs.tasks.WatchTask(ts.WatchTaskRequest(task_id=other), metadata=bearer(PRODUCER), timeout=10))
    assert err.value.code() == DENIED  # type: ignore[attr-defined]
    ack = task_pb2.TaskAck(task_id=other, lease_token="x", cancelled=task_pb2.TaskCancelled())
    assert "acks[0].task_id is queue 'emails'" in refused(stubs.tasks.Ack, ts.AckRequest(acks=[ack]), WORKER)
    assert stubs.tasks.GetTask(ts.GetTaskRequest(task_id=mine), metadata=bearer(READER), timeout=10).task.id == mine
    assert stubs.tasks.Cancel(ts.CancelRequest(task_id=other), metadata=bearer(ADMIN), timeout=10).state == (
        task_pb2.TASK_STATE_CANCELLED)


def test_admin_calls_name_a_queue_in_scope_or_are_refused(stubs: Stubs) -> None:
    submit(stubs, ADMIN, spec("a", "payments"), spec("b", "emails"))
    assert "queue is queue 'emails'" in refused(stubs.admin.PurgeQueue, admin.PurgeQueueRequest(queue="emails"),
                                                SCOPED_ADMIN)
    assert stubs.admin.PauseQueue(admin.PauseQueueRequest(queue="payments"), metadata=bearer(SCOPED_ADMIN),
                                  timeout=10).was_paused is False
    # A filter without a queue would cover every queue: a scoped token must name one.
    assert "without filter.queue it covers every queue" in refused(
        stubs.admin.ListTasks, admin.ListTasksRequest(page_size=10), READER)
    assert "without queue it covers every queue" in refused(stubs.admin.ListQueues, admin.ListQueuesRequest(), READER)
    page = stubs.admin.ListTasks(admin.ListTasksRequest(filter=admin.TaskFilter(queue="payments"), page_size=10),
                                 metadata=bearer(READER), timeout=10)
    assert {t.queue for t in page.tasks} == {"payments"}
    cancel_all = admin.CancelTasksRequest(filter=admin.TaskFilter(states=[task_pb2.TASK_STATE_QUEUED]))
    refused(stubs.admin.CancelTasks, cancel_all, SCOPED_ADMIN)
    assert "it is not tied to a queue" in refused(stubs.admin.GetWorker, admin.GetWorkerRequest(worker_id="w"), READER)
    # Schedule ids are global: a scoped token could replace another team's schedule.
    refused(stubs.schedules.ListSchedules, sched.ListSchedulesRequest(), READER)
    template = spec("a", "payments")
    create = sched.CreateScheduleRequest(schedule=sched.Schedule(id="s", cron=sched.CronTrigger(expression="@daily"),
                                                                 template=template))
    assert "it is not tied to a queue" in refused(stubs.schedules.CreateSchedule, create, SCOPED_ADMIN)
    assert stubs.admin.CancelTasks(cancel_all, metadata=bearer(ADMIN), timeout=10).cancelled == 2


def test_connect_checks_the_queues_of_the_hello(stubs: Stubs) -> None:
    def hello(*names: str) -> ws.ConnectRequest:
        return ws.ConnectRequest(hello=ws.WorkerHello(worker_id="w-1", queues=names, credit=1))

    with pytest.raises(grpc.RpcError) as err:
        next(stubs.workers.Connect(iter([hello("payments", "emails")]), metadata=bearer(WORKER), timeout=10))
    assert err.value.code() == DENIED and "hello.queues[1] is queue 'emails'" in (  # type: ignore[attr-defined]
        err.value.details() or "")  # type: ignore[attr-defined]
    out: queues.Queue[ws.ConnectRequest | None] = queues.Queue()
    out.put(hello("payments"))
    replies = stubs.workers.Connect(iter(out.get, None), metadata=bearer(WORKER), timeout=20)
    try:
        assert next(replies).WhichOneof("kind") == "accepted"
        submit(stubs, PRODUCER, spec("a", "payments"))
        assert next(replies).WhichOneof("kind") == "batch"
    finally:
        out.put(None)
        replies.cancel()


def test_each_pipeline_message_is_checked(stubs: Stubs) -> None:
    out: queues.Queue[ts.PipelineRequest | None] = queues.Queue()
    replies = stubs.tasks.Pipeline(iter(out.get, None), metadata=bearer(PRODUCER), timeout=20)
    ok = ts.PipelineRequest(call_id=1, submit=ts.SubmitRequest(tasks=[spec("a", "payments")]))
    out.put(ok)
    first = next(replies)
    assert first.WhichOneof("reply") == "submit"
    task_id = first.submit.tasks[0].id
    out.put(ts.PipelineRequest(call_id=2, get_results=ts.GetResultsRequest(task_ids=[task_id])))
    assert next(replies).get_results.results[0].task_id == task_id
    out.put(ts.PipelineRequest(call_id=3, submit=ts.SubmitRequest(tasks=[spec("a", "payments"), spec("b")])))
    with pytest.raises(grpc.RpcError) as err:
        next(replies)
    assert err.value.code() == DENIED  # type: ignore[attr-defined]
    assert "submit.tasks[1].queue is queue 'default'" in (err.value.details() or "")  # type: ignore[attr-defined]
    out.put(None)
    page = stubs.admin.ListTasks(admin.ListTasksRequest(filter=admin.TaskFilter(queue="payments"), page_size=10),
                                 metadata=bearer(ADMIN), timeout=10)
    assert [t.id for t in page.tasks] == [task_id]  # the refused message stored nothing


def test_each_role_does_only_its_part(stubs: Stubs) -> None:
    """A worker holding only a producer token cannot Connect; a producer cannot purge or read
    dead letters; a reader cannot act."""
    hello = ws.ConnectRequest(hello=ws.WorkerHello(worker_id="w-1", queues=["payments"], credit=1))
    with pytest.raises(grpc.RpcError) as err:
        next(stubs.workers.Connect(iter([hello]), metadata=bearer(PRODUCER), timeout=10))
    assert err.value.code() == DENIED  # type: ignore[attr-defined]
    assert "WorkerService/Connect needs role worker or admin; token 'web' (producer)" in (
        err.value.details() or "")  # type: ignore[attr-defined]
    assert "needs role admin" in refused(stubs.admin.PurgeQueue, admin.PurgeQueueRequest(queue="payments"), PRODUCER)
    assert "needs role reader or admin" in refused(
        stubs.admin.ListDeadLetters, admin.ListDeadLettersRequest(queue="payments"), PRODUCER)
    task_id = submit(stubs, PRODUCER, spec("a", "payments")).tasks[0].id
    refused(stubs.tasks.Submit, ts.SubmitRequest(tasks=[spec("a", "payments")]), READER)
    refused(stubs.tasks.Cancel, ts.CancelRequest(task_id=task_id), READER)
    refused(stubs.admin.PauseQueue, admin.PauseQueueRequest(queue="payments"), READER)
    refused(stubs.tasks.Poll, ts.PollRequest(queues=["payments"]), READER)
    dead = stubs.admin.ListDeadLetters(admin.ListDeadLettersRequest(queue="payments"), metadata=bearer(READER),
                                       timeout=10)
    assert dead.total == 0
