"""Lease ownership on the worker stream, over real gRPC against real scheduler processes.

A lease belongs to one stream at a time, on any replica: a stream that adopts a lease through
WorkerHello.held owns it from then on, and the stream it came from no longer hands it back
when it closes (issue 13, defect 1). Reports with a seq are answered by ReportDone, which lists
refused acks; ExtendLease never shortens a lease.

Every wait is on an API call: a stream's close is observed through a second lease it held,
which its close hands back (QUEUED in GetTask) in the same release call as the adopted one.
"""

from __future__ import annotations

import grpc
import pytest
from google.protobuf.duration_pb2 import Duration

from conveyor import Call, Client, SubmitOptions, TaskState
from conveyor.v1 import task_pb2, task_service_pb2, task_service_pb2_grpc
from tests.harness import Cluster, wait_for
from tests.streams import RawWorkerStream, success

QUEUE = "leases"


def submit(client: Client, count: int, timeout: float | None = None) -> list[str]:
    options = SubmitOptions(queue=QUEUE, timeout=timeout)
    return [h.id for h in client.submit_many([Call("l.task", [n], {}, options) for n in range(count)])]


def state(client: Client, task_id: str) -> TaskState:
    return TaskState(client.get_task(task_id).state)


@pytest.mark.parametrize("where", ["same-replica", "other-replica"])
def test_an_adopted_lease_is_not_handed_back_when_the_old_stream_breaks(cluster: Cluster, redis_url: str,
                                                                        where: str) -> None:
    _, a = cluster.scheduler(redis_url)
    b = a if where == "same-replica" else cluster.scheduler(redis_url, name="replica-b")[1]
    old = RawWorkerStream(a, "w-1", [QUEUE], credit=2)
    with Client(a) as client:
        x, y = submit(client, 2)
        lx, _ = sorted(old.take(2), key=lambda lt: lt.task.id != x)
        new = RawWorkerStream(b, "w-1", [QUEUE], held=[(x, lx.lease_token)])  # after a reconnect, say
        assert list(new.accepted.lost) == []
        old.heartbeat()  # the old stream's heartbeat no longer extends it either
        old.cancel()
        wait_for(lambda: state(client, y) is TaskState.QUEUED, what="the old stream's close to hand back y")
        task = client.get_task(x)
        assert (TaskState(task.state), task.attempt, task.worker_id) == (TaskState.ACTIVE, 1, "w-1")

        new.report(acks=[success(lx, b"10")], seq=7)
        done = new.recv("report_done").report_done
        assert (done.seq, list(done.refused)) == (7, [])
        assert client.handle(x).result(timeout=10) == 10
        assert client.get_task(x).attempt == 1  # it ran once
        new.report(credit=1)  # y, handed back by the old stream, runs here: every task ends once
        (ly,) = new.take(1)
        new.report(acks=[success(ly, b"20")], seq=8)
        assert new.recv("report_done").report_done.seq == 8
        assert client.handle(y).result(timeout=10) == 20
        new.close()


def test_a_lease_handed_back_before_the_new_stream_says_hello_is_reported_lost(cluster: Cluster,
                                                                               redis_url: str) -> None:
    _, a = cluster.scheduler(redis_url)
    old = RawWorkerStream(a, "w-1", [QUEUE], credit=1)
    with Client(a) as client:
        (x,) = submit(client, 1)
        (lx,) = old.take(1)
        old.close()  # a graceful end: the scheduler has handed x back once the stream is over
        assert state(client, x) is TaskState.QUEUED
        new = RawWorkerStream(a, "w-1", [QUEUE], held=[(x, lx.lease_token)])
        assert list(new.accepted.lost) == [x]
        new.report(acks=[success(lx)], seq=1)  # the old attempt's outcome is refused, and said so
        done = new.recv("report_done").report_done
        assert [(o.task_id, o.status, o.state) for o in done.refused] == [
            (x, task_pb2.ACK_STATUS_STALE_LEASE, task_pb2.TASK_STATE_QUEUED)]
        new.report(credit=1)
        (again,) = new.take(1)
        assert (again.task.id, again.task.attempt) == (x, 2) and again.lease_token != lx.lease_token
        new.report(acks=[success(again, b"5")], seq=2)
        assert list(new.recv("report_done").report_done.refused) == []
        assert client.handle(x).result(timeout=10) == 5
        new.close()


def test_a_stale_ack_on_the_stream_is_answered_even_without_a_seq(cluster: Cluster, redis_url: str) -> None:
    _, a = cluster.scheduler(redis_url)
    stream = RawWorkerStream(a, "w-1", [QUEUE], credit=1)
    with Client(a) as client:
        (x,) = submit(client, 1)
        (lx,) = stream.take(1)
        stream.report(acks=[success(lx, b"3")])  # no seq: accepted acks get no answer
        assert client.handle(x).result(timeout=10) == 3
        stream.report(acks=[success(lx, b"4")])  # the same outcome again: idempotent, refused
        done = stream.recv("report_done").report_done
        assert (done.seq, [(o.task_id, o.status, o.state) for o in done.refused]) == (
            0, [(x, task_pb2.ACK_STATUS_STALE_LEASE, task_pb2.TASK_STATE_SUCCEEDED)])
        assert client.handle(x).result(timeout=10) == 3  # recorded once
        stream.close()


def test_extend_lease_never_shortens_a_lease(cluster: Cluster, redis_url: str) -> None:
    _, a = cluster.scheduler(redis_url)
    with Client(a) as client, grpc.insecure_channel(a) as channel:
        (x,) = submit(client, 1, timeout=60)
        stub = task_service_pb2_grpc.TaskServiceStub(channel)
        (polled,) = stub.Poll(task_service_pb2.PollRequest(queues=[QUEUE], max_tasks=1), timeout=10).tasks
        assert polled.lease_expires_at == polled.deadline  # a polled lease lasts to the deadline
        resp = stub.ExtendLease(task_service_pb2.ExtendLeaseRequest(
            task_id=x, lease_token=polled.lease_token, extend_by=Duration(seconds=1)), timeout=10)
        assert resp.lease_expires_at == polled.deadline
        stub.Ack(task_service_pb2.AckRequest(acks=[success(polled, b"1")]), timeout=10)
        assert client.handle(x).result(timeout=10) == 1
