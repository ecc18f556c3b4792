"""Queue semantics over real gRPC against a real scheduler and Redis: order, routing, batches."""

from __future__ import annotations

import random

import grpc
import pytest
from google.protobuf.duration_pb2 import Duration

from conveyor import Call, Client, SubmitOptions
from conveyor.v1 import task_pb2, task_service_pb2, task_service_pb2_grpc
from tests.harness import Cluster


def poll_all(stub: task_service_pb2_grpc.TaskServiceStub, queue: str, expected: int) -> list[task_pb2.LeasedTask]:
    leased: list[task_pb2.LeasedTask] = []
    while len(leased) < expected:
        # A long poll: a retried task reaches the ready list through the promoter, asynchronously.
        resp = stub.Poll(task_service_pb2.PollRequest(queues=[queue], max_tasks=97, worker_id="poller",
                                                      wait=Duration(seconds=5)), timeout=10)
        assert resp.tasks, f"queue {queue} ran dry after {len(leased)} of {expected} tasks"
        leased.extend(resp.tasks)
    return leased


def test_strict_priority_then_fifo(scheduler: str, client: Client) -> None:
    rng = random.Random(7)
    priorities = [rng.randrange(10) for _ in range(1000)]
    calls = [Call("t.add", [i, 0], {}, SubmitOptions(priority=p)) for i, p in enumerate(priorities)]
    ids: list[str] = []
    for start in range(0, 1000, 137):  # several batches: FIFO must hold across calls too
        ids += [h.id for h in client.submit_many(calls[start:start + 137])]
    with grpc.insecure_channel(scheduler) as ch:
        leased = poll_all(task_service_pb2_grpc.TaskServiceStub(ch), "default", 1000)
    expected = [ids[i] for i in sorted(range(1000), key=lambda i: (-priorities[i], i))]
    assert [lt.task.id for lt in leased] == expected
    assert all(lt.task.attempt == 1 and lt.lease_token for lt in leased)


def test_routing_rules(cluster: Cluster, redis_url: str) -> None:
    _, target = cluster.scheduler(redis_url, "--route", "emails.*=emails", "--route", "reports.*=reports")
    with Client(target) as client:
        routed = {
            "emails.send": client.submit("emails.send").queue,
            "reports.daily": client.submit("reports.daily").queue,
            "other.thing": client.submit("other.thing").queue,
            "explicit": client.submit("emails.send", queue="vip").queue,
        }
        assert routed == {"emails.send": "emails", "reports.daily": "reports", "other.thing": "default",
                          "explicit": "vip"}
        with grpc.insecure_channel(target) as ch:
            stub = task_service_pb2_grpc.TaskServiceStub(ch)
            for queue, name in (("emails", "emails.send"), ("reports", "reports.daily"), ("vip", "emails.send")):
                (lt,) = poll_all(stub, queue, 1)
                assert (lt.task.name, lt.task.queue) == (name, queue)


def test_batch_of_ten_thousand_in_one_call(scheduler: str, client: Client) -> None:
    handles = client.submit_many([Call("t.add", [i, i]) for i in range(10_000)])
    assert len({h.id for h in handles}) == 10_000
    assert client.get_task(handles[-1].id).state == task_pb2.TASK_STATE_QUEUED


@pytest.mark.parametrize("ack_twice", [False, True])
def test_stale_lease_is_refused(scheduler: str, client: Client, ack_twice: bool) -> None:
    """Only the current lease holder's ack counts; an old token gets FAILED_PRECONDITION."""
    handle = client.submit("t.add", [1, 2], max_retries=1, retry_backoff=0.0)
    with grpc.insecure_channel(scheduler) as ch:
        stub = task_service_pb2_grpc.TaskServiceStub(ch)
        (first,) = poll_all(stub, "default", 1)

        def ack(token: str, data: bytes) -> task_service_pb2.AckResponse:
            return stub.Ack(task_service_pb2.AckRequest(acks=[task_pb2.TaskAck(
                task_id=first.task.id, lease_token=token, result=task_pb2.TaskResult(data=data))]), timeout=10)

        if ack_twice:  # a duplicate ack of a recorded outcome is stale too
            ack(first.lease_token, b"3")
            stale_token = first.lease_token
        else:  # the first holder fails with a retry; the second attempt gets a new token
            stub.Ack(task_service_pb2.AckRequest(acks=[task_pb2.TaskAck(
                task_id=first.task.id, lease_token=first.lease_token,
                failure=task_pb2.TaskFailure(error=task_pb2.TaskError(type="X"), retry=True))]), timeout=10)
            (second,) = poll_all(stub, "default", 1)
            assert second.task.attempt == 2 and second.lease_token != first.lease_token
            stale_token = first.lease_token
        with pytest.raises(grpc.RpcError) as err:
            ack(stale_token, b"999")
        assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "stale lease" in err.value.details()
        if not ack_twice:
            ack(second.lease_token, b"3")
    assert handle.result(timeout=10) == 3


def test_batch_ack_reports_each_outcome(scheduler: str, client: Client) -> None:
    client.submit_many([Call("t.add", [i, i]) for i in range(3)])
    with grpc.insecure_channel(scheduler) as ch:
        stub = task_service_pb2_grpc.TaskServiceStub(ch)
        leased = poll_all(stub, "default", 3)
        acks = [task_pb2.TaskAck(task_id=lt.task.id, lease_token=lt.lease_token, result=task_pb2.TaskResult(data=b"0"))
                for lt in leased]
        acks[1].lease_token = "wrong"
        resp = stub.Ack(task_service_pb2.AckRequest(acks=acks), timeout=10)
    assert [o.status for o in resp.outcomes] == [task_pb2.ACK_STATUS_ACCEPTED, task_pb2.ACK_STATUS_STALE_LEASE,
                                                  task_pb2.ACK_STATUS_ACCEPTED]
    assert [o.state for o in resp.outcomes] == [task_pb2.TASK_STATE_SUCCEEDED, task_pb2.TASK_STATE_ACTIVE,
                                                 task_pb2.TASK_STATE_SUCCEEDED]


def test_cancel_queued_task(scheduler: str, client: Client) -> None:
    keep, drop = client.submit("t.add", [1, 1]), client.submit("t.add", [2, 2])
    assert drop.cancel().name == "CANCELLED"
    with grpc.insecure_channel(scheduler) as ch:
        stub = task_service_pb2_grpc.TaskServiceStub(ch)
        (only,) = poll_all(stub, "default", 1)
        assert only.task.id == keep.id
        resp = stub.Poll(task_service_pb2.PollRequest(queues=["default"], max_tasks=10), timeout=10)
        assert not resp.tasks  # the cancelled entry was dropped, never leased
