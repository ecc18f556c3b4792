"""Task.attempts: every failed attempt (and every one handed back, see tests/e2e/test_workers.py)
is kept with its worker, times and error, oldest first, the last 16 only."""

from __future__ import annotations

import grpc

from conveyor import Client
from conveyor.v1 import task_pb2, task_service_pb2, task_service_pb2_grpc
from tests.harness import Cluster, wait_for


def _poll(stub: task_service_pb2_grpc.TaskServiceStub, queue: str, worker: str) -> task_pb2.LeasedTask:
    def one() -> list[task_pb2.LeasedTask]:
        return list(stub.Poll(task_service_pb2.PollRequest(queues=[queue], max_tasks=1, worker_id=worker,
                                                           wait={"seconds": 1})).tasks)
    return wait_for(one, what=f"a task for {worker}")[0]


def _fail(stub: task_service_pb2_grpc.TaskServiceStub, lt: task_pb2.LeasedTask, n: int) -> None:
    error = task_pb2.TaskError(type="Boom", message=f"failure {n}", traceback=f"Traceback {n}\n" + "x" * 10_000)
    stub.Ack(task_service_pb2.AckRequest(acks=[task_pb2.TaskAck(
        task_id=lt.task.id, lease_token=lt.lease_token, failure=task_pb2.TaskFailure(error=error, retry=True))]))


def test_each_failed_attempt_is_kept_with_its_worker_times_and_error(cluster: Cluster, redis_url: str) -> None:
    _, target = cluster.scheduler(redis_url)
    channel = grpc.insecure_channel(target)
    stub = task_service_pb2_grpc.TaskServiceStub(channel)
    with Client(target) as client:
        handle = client.submit("t.add", [1, 2], queue="hist", max_retries=20, retry_backoff=0)
        for n in range(1, 19):  # 18 failures, each on its own worker
            lt = _poll(stub, "hist", f"w{n}")
            assert not lt.task.attempts  # a leased task goes without its history
            _fail(stub, lt, n)
        last = _poll(stub, "hist", "w19")
        stub.Ack(task_service_pb2.AckRequest(acks=[task_pb2.TaskAck(
            task_id=last.task.id, lease_token=last.lease_token, result=task_pb2.TaskResult(data=b"3"))]))
        assert handle.result(timeout=10) == 3
        task = client.get_task(handle.id)
    attempts = list(task.attempts)
    assert [a.attempt for a in attempts] == list(range(3, 19))  # the last 16 failures, oldest first
    assert [a.worker_id for a in attempts] == [f"w{n}" for n in range(3, 19)]
    assert all(a.error.type == "Boom" and a.error.message == f"failure {a.attempt}" for a in attempts)
    assert all(len(a.error.traceback) == 8192 and a.error.traceback.startswith(f"Traceback {a.attempt}")
               for a in attempts)
    assert all(0 < a.started_at.ToMilliseconds() <= a.ended_at.ToMilliseconds() for a in attempts)
    assert (task.state, task.attempt, task.worker_id) == (task_pb2.TASK_STATE_SUCCEEDED, 19, "w19")
    channel.close()
