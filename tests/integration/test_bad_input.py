"""Bad input against a real scheduler over real gRPC.

Every refused call must come back with the right status, a message naming the
offending field, and no change at all to Redis (checked with DBSIZE around the call).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import pytest
import redis
from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp

from conveyor.v1 import (
    schedule_service_pb2,
    schedule_service_pb2_grpc,
    task_pb2,
    task_service_pb2,
    task_service_pb2_grpc,
    worker_service_pb2,
    worker_service_pb2_grpc,
)
from tests.harness import unknown_id_like

MIB = 1024 * 1024
RPC_TIMEOUT = 30.0
QUEUES_KEY = "cv:{cv}:queues"

Spec = task_pb2.TaskSpec
INVALID = grpc.StatusCode.INVALID_ARGUMENT


# -- fixtures and the one helper ---------------------------------------------------------


@pytest.fixture
def channel(scheduler: str) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(scheduler) as ch:
        yield ch


@pytest.fixture
def stub(channel: grpc.Channel) -> task_service_pb2_grpc.TaskServiceStub:
    return task_service_pb2_grpc.TaskServiceStub(channel)


@pytest.fixture
def db(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


def task_keys(db: redis.Redis) -> set[bytes]:
    """Every key but the beat leader's lease, which the scheduler renews on its own."""
    return {k for k in db.scan_iter() if not k.startswith(b"cv:{beat}:")}


def expect_error(db: redis.Redis, call: Callable[[], Any], code: grpc.StatusCode, field: str) -> str:
    """Runs `call`, which must fail with `code` naming `field`, and must leave Redis untouched.

    `field` has to appear as a whole field path: "tasks" does not match "tasks[0].name",
    and "hello" does not match "hello.queues".
    """
    before = task_keys(db)
    with pytest.raises(grpc.RpcError) as info:
        call()
    after = task_keys(db)
    err = info.value
    details = err.details() or ""
    assert err.code() == code, f"expected {code.name}, got {err.code().name}: {details}"
    assert re.search(re.escape(field) + r"(?![\w.\[])", details), f"{field!r} not named in {details!r}"
    assert after == before, f"keys changed from {before} to {after} on a refused call ({details})"
    return details


def submit(stub: task_service_pb2_grpc.TaskServiceStub, *specs: task_pb2.TaskSpec
           ) -> task_service_pb2.SubmitResponse:
    return stub.Submit(task_service_pb2.SubmitRequest(tasks=specs), timeout=RPC_TIMEOUT)


def lease_one(stub: task_service_pb2_grpc.TaskServiceStub, queue: str = "default") -> task_pb2.LeasedTask:
    resp = stub.Poll(task_service_pb2.PollRequest(queues=[queue], max_tasks=1, wait=Duration(seconds=10),
                                                  worker_id="tester"), timeout=RPC_TIMEOUT)
    assert len(resp.tasks) == 1, resp
    return resp.tasks[0]


def ts(seconds: int) -> Timestamp:
    return Timestamp(seconds=seconds)


FUTURE = int(time.time()) + 30 * 86_400  # seconds: safely future, within the 360 days an eta may be ahead


# -- Submit: one bad TaskSpec ------------------------------------------------------------

BAD_SPECS = [
    pytest.param(Spec(name=""), "tasks[0].name", id="empty-name"),
    pytest.param(Spec(name="n" * 201), "tasks[0].name", id="name-201-chars"),
    pytest.param(Spec(name="billing charge"), "tasks[0].name", id="name-with-space"),
    pytest.param(Spec(name="t", queue="q{x}"), "tasks[0].queue", id="queue-brace"),
    pytest.param(Spec(name="t", queue="q*"), "tasks[0].queue", id="queue-star"),
    pytest.param(Spec(name="t", queue="my queue"), "tasks[0].queue", id="queue-space"),
    pytest.param(Spec(name="t", queue="q" * 65), "tasks[0].queue", id="queue-65-chars"),
    pytest.param(Spec(name="t", payload=b"x" * (MIB + 1)), "tasks[0].payload", id="payload-1MiB+1"),
    pytest.param(Spec(name="t", priority=-1), "tasks[0].priority", id="priority--1"),
    pytest.param(Spec(name="t", priority=10), "tasks[0].priority", id="priority-10"),
    pytest.param(Spec(name="t", timeout=Duration(seconds=-1)), "tasks[0].timeout", id="timeout-negative"),
    pytest.param(Spec(name="t", timeout=Duration()), "tasks[0].timeout", id="timeout-zero"),
    pytest.param(Spec(name="t", eta=ts(FUTURE), countdown=Duration(seconds=5)), "tasks[0].countdown",
                 id="eta-and-countdown"),
    pytest.param(Spec(name="t", eta=ts(FUTURE), expires_at=ts(FUTURE - 60)), "tasks[0].expires_at",
                 id="expires-before-eta"),
    pytest.param(Spec(name="t", idempotency_window=Duration(seconds=60)), "tasks[0].idempotency_window",
                 id="window-without-key"),
    pytest.param(Spec(name="t", eta=Timestamp(seconds=253402300799)), "tasks[0].eta", id="eta-year-9999"),
    pytest.param(Spec(name="t", countdown=Duration(seconds=361 * 86_400)), "tasks[0].countdown", id="countdown-361d"),
    pytest.param(Spec(name="t", timeout=Duration(seconds=1, nanos=1_999_999_999)), "tasks[0].timeout",
                 id="timeout-nanos-over-a-second"),
    pytest.param(Spec(name="t", countdown=Duration(nanos=1_000_000_000)), "tasks[0].countdown",
                 id="countdown-nanos-one-second"),
    pytest.param(Spec(name="t", retry=task_pb2.RetryPolicy(max_retries=2, initial_backoff=Duration(
        seconds=1, nanos=2_000_000_000))), "tasks[0].retry.initial_backoff", id="backoff-nanos-two-seconds"),
]


@pytest.mark.parametrize(("spec", "field"), BAD_SPECS)
def test_submit_rejects_bad_spec(stub: task_service_pb2_grpc.TaskServiceStub, db: redis.Redis,
                                 spec: task_pb2.TaskSpec, field: str) -> None:
    expect_error(db, lambda: submit(stub, spec), INVALID, field)
    # Not even the queue registry was created (the beat leader's lease is the only key).
    assert task_keys(db) == set()


def test_eta_and_countdown_message_names_both(stub: task_service_pb2_grpc.TaskServiceStub, db: redis.Redis) -> None:
    details = expect_error(db, lambda: submit(stub, Spec(name="t", eta=ts(FUTURE), countdown=Duration(seconds=5))),
                           INVALID, "tasks[0].countdown")
    assert "eta" in details


def test_duration_with_out_of_range_nanos_names_the_field(stub: task_service_pb2_grpc.TaskServiceStub,
                                                          db: redis.Redis) -> None:
    """A Duration's nanos must be 0 to 999,999,999: 1 s + 1,999,999,999 ns is refused, not read as 2.999 s."""
    specs = [Spec(name="t"), Spec(name="t", retry=task_pb2.RetryPolicy(
        max_retries=1, max_backoff=Duration(seconds=3, nanos=1_000_000_000)))]
    details = expect_error(db, lambda: submit(stub, *specs), INVALID, "tasks[1].retry.max_backoff")
    assert "nanos must be 0 to 999,999,999, got 1,000,000,000" in details
    assert task_keys(db) == set()


def test_payload_at_the_limit_is_accepted(stub: task_service_pb2_grpc.TaskServiceStub) -> None:
    resp = submit(stub, Spec(name="t", payload=b"x" * MIB))
    assert len(resp.tasks) == 1
    assert resp.tasks[0].state == task_pb2.TASK_STATE_QUEUED


# -- Submit: batch size and whole-batch rejection ----------------------------------------


@pytest.mark.parametrize("count", [0, 10_001], ids=["empty", "10001"])
def test_submit_batch_size_bounds(stub: task_service_pb2_grpc.TaskServiceStub, db: redis.Redis, count: int) -> None:
    specs = [Spec(name="t")] * count
    details = expect_error(db, lambda: submit(stub, *specs), INVALID, "tasks")
    assert str(count) in details


def test_one_bad_task_rejects_the_whole_batch(stub: task_service_pb2_grpc.TaskServiceStub, db: redis.Redis) -> None:
    submit(stub, Spec(name="warmup"))  # the registry and a queue exist, so partial writes would show
    specs = [Spec(name=f"t{i}", queue="batchq") for i in range(5)]
    specs[3].priority = 10
    details = expect_error(db, lambda: submit(stub, *specs), INVALID, "tasks[3].priority")
    for i in (0, 1, 2, 4):
        assert f"tasks[{i}]" not in details
    assert not db.hexists(QUEUES_KEY, "batchq"), "the batch's queue was registered"
    assert not db.keys("cv:{q:batchq}:*")


def test_full_batch_of_10000_is_accepted(stub: task_service_pb2_grpc.TaskServiceStub, db: redis.Redis) -> None:
    resp = submit(stub, *[Spec(name="t.bulk", payload=b"{}") for _ in range(10_000)])
    ids = [t.id for t in resp.tasks]
    assert len(ids) == 10_000
    assert len(set(ids)) == 10_000
    assert all(len(i) == 26 for i in ids)
    assert {t.state for t in resp.tasks} == {task_pb2.TASK_STATE_QUEUED}
    assert db.llen("cv:{q:default}:r:0") == 10_000


# -- bytes that are not a request ---------------------------------------------------------


def test_garbage_bytes_are_invalid_argument(channel: grpc.Channel, db: redis.Redis) -> None:
    raw = channel.unary_unary("/conveyor.v1.TaskService/Submit", request_serializer=None,
                              response_deserializer=None)
    expect_error(db, lambda: raw(b"\xff\xff\xff\xff garbage", timeout=RPC_TIMEOUT), INVALID,
                 "conveyor.v1.SubmitRequest")


# -- task ids -------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["GetTask", "GetResult", "Cancel"])
def test_malformed_task_id(stub: task_service_pb2_grpc.TaskServiceStub, db: redis.Redis, method: str) -> None:
    request = {"GetTask": task_service_pb2.GetTaskRequest, "GetResult": task_service_pb2.GetResultRequest,
               "Cancel": task_service_pb2.CancelRequest}[method](task_id="nope")
    details = expect_error(db, lambda: getattr(stub, method)(request, timeout=RPC_TIMEOUT), INVALID, "task_id")
    assert "nope" in details


def test_get_task_unknown_id_is_not_found(stub: task_service_pb2_grpc.TaskServiceStub, db: redis.Redis) -> None:
    real = submit(stub, Spec(name="t")).tasks[0].id
    unknown = unknown_id_like(real)
    details = expect_error(db, lambda: stub.GetTask(task_service_pb2.GetTaskRequest(task_id=unknown),
                                                    timeout=RPC_TIMEOUT), grpc.StatusCode.NOT_FOUND, unknown)
    assert "no task" in details
    # the real one is still there
    assert stub.GetTask(task_service_pb2.GetTaskRequest(task_id=real), timeout=RPC_TIMEOUT).task.id == real


def test_get_task_id_of_unregistered_queue_is_not_found(stub: task_service_pb2_grpc.TaskServiceStub,
                                                        db: redis.Redis) -> None:
    submit(stub, Spec(name="t"))  # registers queue number 1 only
    # 130 bits of base32 with a leading '7' is exactly 128 bits: ms 2^48-1, queue number 0xFFFF
    request = task_service_pb2.GetTaskRequest(task_id="7ZZZZZZZZZZZZZZZZZZZZZZZZZ")
    expect_error(db, lambda: stub.GetTask(request, timeout=RPC_TIMEOUT), grpc.StatusCode.NOT_FOUND, "no such task")


# -- Poll and Ack ---------------------------------------------------------------------------


@pytest.mark.parametrize(("request_kwargs", "field"), [
    pytest.param({"queues": ["default"], "max_tasks": 1001}, "max_tasks", id="max-tasks-1001"),
    pytest.param({"queues": [], "max_tasks": 1}, "queues", id="no-queues"),
    pytest.param({"queues": ["default"], "max_tasks": 1, "wait": Duration(nanos=1_000_000_000)}, "wait",
                 id="wait-nanos"),
    pytest.param({"queues": ["default"], "max_tasks": 1, "wait": Duration(seconds=-1)}, "wait", id="wait-negative"),
])
def test_poll_rejects(stub: task_service_pb2_grpc.TaskServiceStub, db: redis.Redis, request_kwargs: dict[str, Any],
                      field: str) -> None:
    request = task_service_pb2.PollRequest(**request_kwargs)
    expect_error(db, lambda: stub.Poll(request, timeout=RPC_TIMEOUT), INVALID, field)


def test_poll_max_tasks_zero_means_one(stub: task_service_pb2_grpc.TaskServiceStub) -> None:
    """0 (unset) is the default, as for ListDeadLetters.limit and ListSchedules.page_size."""
    submit(stub, Spec(name="t"), Spec(name="t"), Spec(name="t"))
    first = stub.Poll(task_service_pb2.PollRequest(queues=["default"]), timeout=RPC_TIMEOUT)
    assert len(first.tasks) == 1
    rest = stub.Poll(task_service_pb2.PollRequest(queues=["default"], max_tasks=1000), timeout=RPC_TIMEOUT)
    assert len(rest.tasks) == 2


@pytest.mark.parametrize("token", ["", "t" * 65], ids=["empty", "65-chars"])
def test_lease_token_length(stub: task_service_pb2_grpc.TaskServiceStub, db: redis.Redis, token: str) -> None:
    task_id = submit(stub, Spec(name="t")).tasks[0].id
    leased = lease_one(stub)
    assert 1 <= len(leased.lease_token) <= 64
    extend = task_service_pb2.ExtendLeaseRequest(task_id=task_id, lease_token=token, extend_by=Duration(seconds=5))
    expect_error(db, lambda: stub.ExtendLease(extend, timeout=RPC_TIMEOUT), INVALID, "lease_token")
    ack = task_pb2.TaskAck(task_id=task_id, lease_token=token, result=task_pb2.TaskResult(data=b"1"))
    expect_error(db, lambda: stub.Ack(task_service_pb2.AckRequest(acks=[ack]), timeout=RPC_TIMEOUT), INVALID,
                 "acks[0].lease_token")


def test_ack_with_no_acks(stub: task_service_pb2_grpc.TaskServiceStub, db: redis.Redis) -> None:
    expect_error(db, lambda: stub.Ack(task_service_pb2.AckRequest(), timeout=RPC_TIMEOUT), INVALID, "acks")


def test_single_ack_with_wrong_lease_token(stub: task_service_pb2_grpc.TaskServiceStub, db: redis.Redis) -> None:
    task_id = submit(stub, Spec(name="t")).tasks[0].id
    leased = lease_one(stub)
    assert leased.task.id == task_id
    wrong = "0" * len(leased.lease_token) if leased.lease_token != "0" * len(leased.lease_token) else "1"
    ack = task_pb2.TaskAck(task_id=task_id, lease_token=wrong, result=task_pb2.TaskResult(data=b"1"))
    details = expect_error(db, lambda: stub.Ack(task_service_pb2.AckRequest(acks=[ack]), timeout=RPC_TIMEOUT),
                           grpc.StatusCode.FAILED_PRECONDITION, task_id)
    assert "lease" in details
    task = stub.GetTask(task_service_pb2.GetTaskRequest(task_id=task_id), timeout=RPC_TIMEOUT).task
    assert task.state == task_pb2.TASK_STATE_ACTIVE  # the bad ack changed nothing


@pytest.mark.parametrize("bad", [Duration(seconds=1, nanos=1_000_000_000), Duration(seconds=-1)],
                         ids=["nanos-over", "negative"])
def test_lease_durations_name_the_field(stub: task_service_pb2_grpc.TaskServiceStub, db: redis.Redis,
                                        bad: Duration) -> None:
    """ExtendLease.extend_by and an ack's retry_delay are validated before the lease is touched."""
    task_id = submit(stub, Spec(name="t", retry=task_pb2.RetryPolicy(max_retries=3))).tasks[0].id
    leased = lease_one(stub)
    extend = task_service_pb2.ExtendLeaseRequest(task_id=task_id, lease_token=leased.lease_token, extend_by=bad)
    expect_error(db, lambda: stub.ExtendLease(extend, timeout=RPC_TIMEOUT), INVALID, "extend_by")
    ack = task_pb2.TaskAck(task_id=task_id, lease_token=leased.lease_token, failure=task_pb2.TaskFailure(
        error=task_pb2.TaskError(type="E"), retry=True, retry_delay=bad))
    expect_error(db, lambda: stub.Ack(task_service_pb2.AckRequest(acks=[ack]), timeout=RPC_TIMEOUT), INVALID,
                 "acks[0].failure.retry_delay")
    wait = task_service_pb2.GetResultRequest(task_id=task_id, wait=bad)
    expect_error(db, lambda: stub.GetResult(wait, timeout=RPC_TIMEOUT), INVALID, "wait")
    task = stub.GetTask(task_service_pb2.GetTaskRequest(task_id=task_id), timeout=RPC_TIMEOUT).task
    assert (task.state, task.attempt) == (task_pb2.TASK_STATE_ACTIVE, 1)  # the refused calls changed nothing


def test_get_result_checks_wait_before_looking_the_task_up(stub: task_service_pb2_grpc.TaskServiceStub,
                                                           db: redis.Redis) -> None:
    """An unknown task with a bad wait is INVALID_ARGUMENT (the request is wrong), not NOT_FOUND."""
    request = task_service_pb2.GetResultRequest(task_id=WELL_FORMED, wait=Duration(nanos=1_000_000_000))
    expect_error(db, lambda: stub.GetResult(request, timeout=RPC_TIMEOUT), INVALID, "wait")


def test_long_error_texts_are_cut_not_refused(stub: task_service_pb2_grpc.TaskServiceStub) -> None:
    """What task.proto promises: type 200, message and traceback 65,536 characters; "" becomes "Error"."""
    ids = [t.id for t in submit(stub, Spec(name="t"), Spec(name="t"), Spec(name="t")).tasks]
    leases = {t.task.id: t.lease_token for t in stub.Poll(task_service_pb2.PollRequest(
        queues=["default"], max_tasks=3), timeout=RPC_TIMEOUT).tasks}
    long_error = task_pb2.TaskError(type="T" * 300, message="m" * 70_000, traceback="é" * 70_000)
    acks = [task_pb2.TaskAck(task_id=ids[0], lease_token=leases[ids[0]],
                             failure=task_pb2.TaskFailure(error=long_error)),
            task_pb2.TaskAck(task_id=ids[1], lease_token=leases[ids[1]], failure=task_pb2.TaskFailure()),
            task_pb2.TaskAck(task_id=ids[2], lease_token=leases[ids[2]],
                             result=task_pb2.TaskResult(data=b"1", content_type="x/" + "y" * 200))]
    outcomes = stub.Ack(task_service_pb2.AckRequest(acks=acks), timeout=RPC_TIMEOUT).outcomes
    assert [o.state for o in outcomes] == [task_pb2.TASK_STATE_FAILED, task_pb2.TASK_STATE_FAILED,
                                           task_pb2.TASK_STATE_SUCCEEDED]
    results = stub.GetResults(task_service_pb2.GetResultsRequest(task_ids=ids), timeout=RPC_TIMEOUT).results
    error = results[0].error
    assert (error.type, error.message, error.traceback) == ("T" * 200, "m" * 65_536, "é" * 65_536)
    assert results[1].error.type == "Error"
    assert results[2].result.content_type == ("x/" + "y" * 200)[:100]


def test_cancel_of_finished_task(stub: task_service_pb2_grpc.TaskServiceStub, db: redis.Redis) -> None:
    task_id = submit(stub, Spec(name="t")).tasks[0].id
    leased = lease_one(stub)
    ack = task_pb2.TaskAck(task_id=task_id, lease_token=leased.lease_token, result=task_pb2.TaskResult(data=b"42"))
    outcome = stub.Ack(task_service_pb2.AckRequest(acks=[ack]), timeout=RPC_TIMEOUT).outcomes[0]
    assert outcome.status == task_pb2.ACK_STATUS_ACCEPTED
    assert outcome.state == task_pb2.TASK_STATE_SUCCEEDED
    details = expect_error(db, lambda: stub.Cancel(task_service_pb2.CancelRequest(task_id=task_id),
                                                   timeout=RPC_TIMEOUT),
                           grpc.StatusCode.FAILED_PRECONDITION, task_id)
    assert "SUCCEEDED" in details
    result = stub.GetResult(task_service_pb2.GetResultRequest(task_id=task_id), timeout=RPC_TIMEOUT)
    assert result.state == task_pb2.TASK_STATE_SUCCEEDED
    assert result.result.data == b"42"


# -- the worker stream --------------------------------------------------------------------


@pytest.mark.parametrize(("first", "field"), [
    pytest.param(worker_service_pb2.ConnectRequest(heartbeat=worker_service_pb2.WorkerHeartbeat()), "hello",
                 id="heartbeat-first"),
    pytest.param(worker_service_pb2.ConnectRequest(hello=worker_service_pb2.WorkerHello(
        worker_id="w-1", queues=[], credit=1)), "hello.queues", id="hello-without-queues"),
])
def test_worker_stream_rejects_bad_first_message(channel: grpc.Channel, db: redis.Redis,
                                                 first: worker_service_pb2.ConnectRequest, field: str) -> None:
    connect = worker_service_pb2_grpc.WorkerServiceStub(channel).Connect
    expect_error(db, lambda: list(connect(iter([first]), timeout=RPC_TIMEOUT)), INVALID, field)


# -- GetResults and Submit(wait_results) ------------------------------------------------------

WELL_FORMED = "0" * 26  # a valid id (time 0, queue number 0)


@pytest.mark.parametrize(("request_kwargs", "field", "named"), [
    pytest.param({"task_ids": []}, "task_ids", "0", id="no-ids"),
    pytest.param({"task_ids": [WELL_FORMED] * 10_001}, "task_ids", "10001", id="10001-ids"),
    pytest.param({"task_ids": [WELL_FORMED, "nope", WELL_FORMED]}, "task_ids[1]", "nope", id="malformed-id"),
    pytest.param({"task_ids": [WELL_FORMED], "wait": Duration(seconds=-1)}, "wait", "negative", id="negative-wait"),
    pytest.param({"task_ids": [WELL_FORMED], "wait": Duration(seconds=3600, nanos=1_000_000)}, "wait", "at most",
                 id="wait-over-an-hour"),
    pytest.param({"task_ids": [WELL_FORMED], "wait": Duration(seconds=1, nanos=1_999_999_999)}, "wait", "nanos",
                 id="wait-nanos-over"),
])
def test_get_results_rejects(stub: task_service_pb2_grpc.TaskServiceStub, db: redis.Redis,
                             request_kwargs: dict[str, Any], field: str, named: str) -> None:
    submit(stub, Spec(name="t"))  # a queue exists, so a refused call could have read or written something
    request = task_service_pb2.GetResultsRequest(**request_kwargs)
    details = expect_error(db, lambda: stub.GetResults(request, timeout=RPC_TIMEOUT), INVALID, field)
    assert named in details


def test_get_results_of_unknown_ids_reports_unspecified(stub: task_service_pb2_grpc.TaskServiceStub) -> None:
    real = submit(stub, Spec(name="t")).tasks[0].id
    unknown = [unknown_id_like(real), "7ZZZZZZZZZZZZZZZZZZZZZZZZZ"]  # a known queue's number, and an unregistered one
    resp = stub.GetResults(task_service_pb2.GetResultsRequest(task_ids=[unknown[0], real, unknown[1]]),
                           timeout=RPC_TIMEOUT)
    assert [r.task_id for r in resp.results] == [unknown[0], real, unknown[1]]
    assert [r.state for r in resp.results] == [task_pb2.TASK_STATE_UNSPECIFIED, task_pb2.TASK_STATE_QUEUED,
                                              task_pb2.TASK_STATE_UNSPECIFIED]


@pytest.mark.parametrize(("wait", "named"), [
    pytest.param(Duration(seconds=-1), "negative", id="negative"),
    pytest.param(Duration(nanos=-5), "negative", id="negative-nanos"),
    pytest.param(Duration(seconds=3601), "at most", id="over-an-hour"),
    pytest.param(Duration(nanos=1_000_000_000), "nanos", id="nanos-one-second"),
])
def test_submit_rejects_bad_wait_results(stub: task_service_pb2_grpc.TaskServiceStub, db: redis.Redis,
                                         wait: Duration, named: str) -> None:
    request = task_service_pb2.SubmitRequest(tasks=[Spec(name="t")], wait_results=wait)
    details = expect_error(db, lambda: stub.Submit(request, timeout=RPC_TIMEOUT), INVALID, "wait_results")
    assert named in details
    assert task_keys(db) == set()  # nothing was stored


def test_submit_with_zero_wait_results_answers_at_once(stub: task_service_pb2_grpc.TaskServiceStub) -> None:
    request = task_service_pb2.SubmitRequest(tasks=[Spec(name="t"), Spec(name="t", countdown=Duration(seconds=60))],
                                             wait_results=Duration())
    resp = stub.Submit(request, timeout=RPC_TIMEOUT)
    assert [r.task_id for r in resp.results] == [t.id for t in resp.tasks]
    assert [r.state for r in resp.results] == [task_pb2.TASK_STATE_QUEUED, task_pb2.TASK_STATE_SCHEDULED]
    plain = stub.Submit(task_service_pb2.SubmitRequest(tasks=[Spec(name="t")]), timeout=RPC_TIMEOUT)
    assert len(plain.results) == 0  # results only when asked for


# -- the schedule service -----------------------------------------------------------------


@pytest.mark.parametrize(("schedule", "field"), [
    pytest.param(schedule_service_pb2.Schedule(id="s", interval=Duration(seconds=60, nanos=1_000_000_000),
                                               template=Spec(name="t")), "schedule.interval", id="interval-nanos"),
    pytest.param(schedule_service_pb2.Schedule(id="s", interval=Duration(seconds=60), template=Spec(
        name="t", timeout=Duration(seconds=10), soft_timeout=Duration(seconds=1, nanos=1_999_999_999))),
                 "schedule.template.soft_timeout", id="template-soft-timeout-nanos"),
    pytest.param(schedule_service_pb2.Schedule(id="s", interval=Duration(seconds=60), template=Spec(
        name="t", retry=task_pb2.RetryPolicy(max_retries=1, initial_backoff=Duration(nanos=-1)))),
                 "schedule.template.retry.initial_backoff", id="template-backoff-negative"),
])
def test_schedule_durations_name_the_field(channel: grpc.Channel, db: redis.Redis,
                                           schedule: schedule_service_pb2.Schedule, field: str) -> None:
    stub = schedule_service_pb2_grpc.ScheduleServiceStub(channel)
    create = schedule_service_pb2.CreateScheduleRequest(schedule=schedule)
    expect_error(db, lambda: stub.CreateSchedule(create, timeout=RPC_TIMEOUT), INVALID, field)
    update = schedule_service_pb2.UpdateScheduleRequest(schedule=schedule, allow_missing=True)
    expect_error(db, lambda: stub.UpdateSchedule(update, timeout=RPC_TIMEOUT), INVALID, field)
