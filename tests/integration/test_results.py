"""Results: waiting is a push that ends when the task ends; results expire after their TTL."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import grpc
import pytest
from google.protobuf.duration_pb2 import Duration

from conveyor import AsyncClient, Call, Client, NotFound, ResultTimeout, TaskFailed, TaskState
from conveyor.v1 import task_pb2, task_service_pb2, task_service_pb2_grpc
from tests.harness import Cluster, unknown_id_like, wait_for


def test_wait_returns_when_the_task_completes(cluster: Cluster, scheduler: str, client: Client, tmp_path: Path) -> None:
    cluster.worker(scheduler)
    gate = tmp_path / "gate"
    handle = client.submit("t.wait_file", [str(gate), "done"])
    wait_for(lambda: handle.state.name == "ACTIVE", what="the task to start")
    opened_at: list[float] = []

    def open_gate() -> None:
        time.sleep(0.3)
        opened_at.append(time.monotonic())
        gate.touch()

    threading.Thread(target=open_gate).start()
    assert handle.result(timeout=60) == "done"
    # The waiter was woken by the completion, well before its 60 s wait could run out.
    assert time.monotonic() - opened_at[0] < 5


def test_failure_is_reported_with_its_error(cluster: Cluster, scheduler: str, client: Client) -> None:
    cluster.worker(scheduler)
    handle = client.submit("t.fail", ["bad input"])
    with pytest.raises(TaskFailed) as err:
        handle.result(timeout=30)
    assert (err.value.error_type, err.value.error_message, err.value.state) == ("ValueError", "bad input", "FAILED")
    assert "raise ValueError(message)" in err.value.traceback


def test_results_expire_after_their_ttl(cluster: Cluster, redis_url: str) -> None:
    _, target = cluster.scheduler(redis_url, "--result-ttl", "1")
    cluster.worker(target)
    with Client(target) as client:
        handle = client.submit("t.add", [20, 22])
        assert handle.result(timeout=30) == 42
        wait_for(lambda: _gone(client, handle.id), timeout=10, what="the result to expire")


def _gone(client: Client, task_id: str) -> bool:
    try:
        client.get_result(task_id)
    except NotFound:
        return True
    return False


def test_async_client_round_trip(cluster: Cluster, scheduler: str) -> None:
    cluster.worker(scheduler)

    async def main() -> None:
        async with AsyncClient(scheduler) as client:
            handle = await client.submit("t.echo", [{"nested": [1, 2, {"x": None}]}])
            assert await handle.result(timeout=30) == {"nested": [1, 2, {"x": None}]}
            assert (await handle.state()).name == "SUCCEEDED"

    asyncio.run(main())


# -- Submit(wait_results), GetResults and the SDK's run / results / wait_many ---------------------


def test_run_returns_the_value_or_raises_the_failure(cluster: Cluster, scheduler: str, client: Client) -> None:
    cluster.worker(scheduler)
    assert client.run("t.add", [20, 22], timeout=30) == 42
    assert client.run("t.echo", [{"a": [1, None]}]) == {"a": [1, None]}  # no timeout: waits as long as it takes
    with pytest.raises(TaskFailed) as err:
        client.run("t.fail", ["broken"], timeout=30)
    assert (err.value.state, err.value.error_type, err.value.error_message) == ("FAILED", "ValueError", "broken")


def test_run_times_out_and_the_task_still_finishes(cluster: Cluster, scheduler: str, client: Client,
                                                   tmp_path: Path) -> None:
    cluster.worker(scheduler)
    gate = tmp_path / "gate"
    with pytest.raises(ResultTimeout):
        client.run("t.wait_file", [str(gate), "late"], timeout=0.3, idempotency_key="slow-1")
    # The same key names the same task: it is still running, and finishes once released.
    handle = client.submit("t.wait_file", [str(gate), "ignored"], idempotency_key="slow-1")
    assert handle.state in (TaskState.QUEUED, TaskState.ACTIVE)  # not finished (the gate is shut)
    wait_for(lambda: handle.state is TaskState.ACTIVE, what="the slow task to run")
    gate.touch()
    assert handle.result(timeout=30) == "late"
    # A duplicate run() answers with the existing task's result.
    assert client.run("t.wait_file", [str(gate), "ignored"], timeout=30, idempotency_key="slow-1") == "late"


def test_duplicate_submit_with_wait_results_waits_for_the_existing_task(
        cluster: Cluster, scheduler: str, client: Client, tmp_path: Path) -> None:
    cluster.worker(scheduler)
    gate = tmp_path / "gate"
    first = client.submit("t.wait_file", [str(gate), "original"], idempotency_key="order-7")
    wait_for(lambda: first.state is TaskState.ACTIVE, what="the original to start")
    with grpc.insecure_channel(scheduler) as ch:
        stub = task_service_pb2_grpc.TaskServiceStub(ch)
        spec = task_pb2.TaskSpec(name="t.wait_file", payload=b'{"args": ["x", "duplicate"]}',
                                 idempotency_key="order-7")
        request = task_service_pb2.SubmitRequest(tasks=[spec], wait_results=Duration(seconds=30))
        pending = stub.Submit.future(request, timeout=60)
        gate.touch()
        resp = pending.result()
    assert (resp.tasks[0].id, resp.tasks[0].duplicate) == (first.id, True)
    (result,) = resp.results
    assert (result.task_id, result.state, result.result.data) == (first.id, task_pb2.TASK_STATE_SUCCEEDED,
                                                                  b'"original"')


def test_results_of_many_handles_in_order(cluster: Cluster, scheduler: str, client: Client) -> None:
    cluster.worker(scheduler, concurrency=8)
    handles = client.submit_many([Call("t.add", [i, 1000]) for i in range(300)])
    mixed = [h if i % 2 else h.id for i, h in enumerate(handles)]  # handles and plain ids alike
    assert client.results(mixed, timeout=60) == [i + 1000 for i in range(300)]
    responses = client.wait_many(handles[::-1], timeout=30)
    assert [r.task_id for r in responses] == [h.id for h in handles[::-1]]
    assert {r.state for r in responses} == {task_pb2.TASK_STATE_SUCCEEDED}


def test_results_raises_the_first_failure_in_order(cluster: Cluster, scheduler: str, client: Client) -> None:
    cluster.worker(scheduler)
    handles = client.submit_many([Call("t.add", [1, 1]), Call("t.fail", ["first"]), Call("t.fail", ["second"])])
    with pytest.raises(TaskFailed) as err:
        client.results(handles, timeout=30)
    assert (err.value.task_id, err.value.error_message) == (handles[1].id, "first")


def test_results_of_an_unknown_id_raise_not_found(scheduler: str, client: Client) -> None:
    real = client.submit("t.add", [1, 2])  # nobody runs it: it stays QUEUED
    unknown = unknown_id_like(real.id)
    responses = client.wait_many([unknown], timeout=5)  # an unknown task counts as settled: no waiting
    assert [(r.task_id, r.state) for r in responses] == [(unknown, task_pb2.TASK_STATE_UNSPECIFIED)]
    with pytest.raises(NotFound, match=unknown):
        client.results([unknown])
    with pytest.raises(ResultTimeout):
        client.results([unknown, real], timeout=0.3)


def test_wait_many_wakes_on_completion(cluster: Cluster, scheduler: str, client: Client, tmp_path: Path) -> None:
    cluster.worker(scheduler, concurrency=4)
    gate = tmp_path / "gate"
    handles = client.submit_many([Call("t.wait_file", [str(gate), i]) for i in range(4)])
    wait_for(lambda: all(h.state is TaskState.ACTIVE for h in handles), what="all four to start")
    with pytest.raises(ResultTimeout):
        client.wait_many(handles, timeout=0.2)
    gate.touch()
    assert client.results(handles, timeout=30) == [0, 1, 2, 3]


def test_async_run_results_and_wait_many(cluster: Cluster, scheduler: str, tmp_path: Path) -> None:
    cluster.worker(scheduler)
    gate = tmp_path / "gate"

    async def main() -> None:
        async with AsyncClient(scheduler) as client:
            assert await client.run("t.add", [2, 3], timeout=30) == 5
            with pytest.raises(TaskFailed):
                await client.run("t.fail", ["async"], timeout=30)
            with pytest.raises(ResultTimeout):
                await client.run("t.wait_file", [str(gate), "slow"], timeout=0.2)
            handles = await client.submit_many([Call("t.add", [i, i]) for i in range(20)])
            assert await client.results(handles, timeout=30) == [2 * i for i in range(20)]
            responses = await client.wait_many([h.id for h in handles[:3]], timeout=30)
            assert [r.task_id for r in responses] == [h.id for h in handles[:3]]
            unknown = unknown_id_like(handles[0].id)
            with pytest.raises(NotFound):
                await client.results([unknown])
            gate.touch()

    asyncio.run(main())
