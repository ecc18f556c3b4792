"""Pushed results (issue 17): the outcome of a task submitted over a client's Pipeline stream
comes back on that stream when it finishes, so `result()` reads nothing; across replicas
through the event bus; not for ignore_result, unary Submit or Submit(wait_results); kept only
for live handles; and a broken stream falls back to reading (test_pipeline's restart test)."""

from __future__ import annotations

import asyncio
import gc
import threading
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf.duration_pb2 import Duration

from conveyor import App, Call, Client, TaskFailed
from conveyor.aio import AsyncClient
from conveyor.v1 import task_pb2, task_service_pb2, task_service_pb2_grpc
from conveyor.v1.task_service_pb2 import PipelineRequest
from tests.harness import Cluster, wait_for
from tests.integration.test_pipeline import LoggedClient, RawPipeline, add_spec


def pushed_slots_done(client: Client, ids: list[str]) -> bool:
    pipeline = client._pipeline
    assert pipeline is not None
    slots = [pipeline.pushed.slot(i) for i in ids]
    assert all(s is not None for s in slots), "a submitted task has no pushed-result slot"
    return all(s is not None and s.done() for s in slots)


def test_finished_tasks_answer_result_from_the_push(cluster: Cluster, scheduler: str) -> None:
    cluster.worker(scheduler, concurrency=4)
    with LoggedClient(scheduler) as logged:
        client = logged.client
        handles = [client.submit("t.add", [i, i]) for i in range(30)]
        ids = [h.id for h in handles]
        wait_for(lambda: pushed_slots_done(client, ids), 30, what="every outcome to be pushed")
        assert [h.result(timeout=10) for h in handles] == [2 * i for i in range(30)]
        assert client.results(handles, timeout=10) == [2 * i for i in range(30)]
        assert logged.log.sent.get("get_results", 0) == 0, "a result was read although it had been pushed"
        assert not logged.log.unary


def test_a_waiting_result_wakes_on_the_push(cluster: Cluster, scheduler: str, tmp_path: Path) -> None:
    cluster.worker(scheduler)
    gate = tmp_path / "gate"
    with LoggedClient(scheduler) as logged:
        client = logged.client
        handle = client.submit("t.wait_file", [str(gate), "opened"])
        got: list[Any] = []
        waiter = threading.Thread(target=lambda: got.append(handle.result(timeout=30)), name="waiter")
        waiter.start()
        gate.touch()
        waiter.join(30)
        assert got == ["opened"]
        assert logged.log.sent.get("get_results", 0) == 0


def test_failures_are_pushed_and_read_again(cluster: Cluster, scheduler: str) -> None:
    """A failed task may be retried or requeued later, so its push wakes result(), which reads."""
    cluster.worker(scheduler)
    with LoggedClient(scheduler) as logged:
        client = logged.client
        handle = client.submit("t.fail", ["no"])
        wait_for(lambda: pushed_slots_done(client, [handle.id]), 30, what="the failure to be pushed")
        with pytest.raises(TaskFailed, match="no"):
            handle.result(timeout=10)
        assert logged.log.sent["get_results"] == 1


def test_an_ack_on_another_replica_is_pushed_through_the_bus(cluster: Cluster, redis_url: str) -> None:
    _, producer_side = cluster.scheduler(redis_url, name="replica-a")
    _, worker_side = cluster.scheduler(redis_url, name="replica-b")
    cluster.worker(worker_side)
    with LoggedClient(producer_side) as logged:
        client = logged.client
        handles = [client.submit("t.add", [i, 1]) for i in range(20)]
        wait_for(lambda: pushed_slots_done(client, [h.id for h in handles]), 30, what="pushes from replica b")
        assert [h.result(timeout=10) for h in handles] == [i + 1 for i in range(20)]
        assert logged.log.sent.get("get_results", 0) == 0


def test_ignore_result_and_batches_are_not_pushed(cluster: Cluster, scheduler: str) -> None:
    cluster.worker(scheduler)
    with LoggedClient(scheduler) as logged:
        client = logged.client
        assert client._pipeline is not None
        handle = client.submit("t.add", [2, 3], ignore_result=True)
        assert client._pipeline.pushed.slot(handle.id) is None
        assert handle.result(timeout=30) == 5  # still stored: read
        assert logged.log.sent["get_results"] >= 1
        quiet = App("quiet").task(ignore_result=True, name="t.add")(_add)
        (h,) = client.submit_many([quiet.s(1, 1)])  # @app.task(ignore_result=True)
        assert client._pipeline.pushed.slot(h.id) is None and h.result(timeout=30) == 2
        batch = client.submit_many([Call("t.add", [i, 1]) for i in range(3)])  # read in batched calls
        assert all(client._pipeline.pushed.slot(h.id) is None for h in batch)
        assert client.results(batch, timeout=30) == [1, 2, 3]


def _add(x: int, y: int) -> int:
    return x + y


def test_pushed_results_live_only_as_long_as_their_handles(cluster: Cluster, scheduler: str) -> None:
    cluster.worker(scheduler, concurrency=4)
    with Client(scheduler) as client:
        pushed = client._pipeline.pushed  # type: ignore[union-attr]
        handles = [client.submit("t.add", [i, i]) for i in range(50)]
        assert len(pushed) == 50
        assert client.results(handles, timeout=30) == [2 * i for i in range(50)]
        del handles
        gc.collect()
        assert len(pushed) == 0
        for i in range(50):  # fire and forget: the handle is dropped before the answer comes
            client.send("t.add", [i, i])
        client.flush(timeout=30)
        gc.collect()
        wait_for(lambda: len(pushed) == 0, 10, what="the slots of dropped send handles to go")


def test_the_stream_pushes_outcomes_with_call_id_zero(cluster: Cluster, scheduler: str) -> None:
    cluster.worker(scheduler)
    with grpc.insecure_channel(scheduler) as channel:
        stream = RawPipeline(channel)
        try:
            wanted = task_pb2.TaskSpec()
            wanted.CopyFrom(add_spec(20, 22))
            wanted.push_result = True
            stream.submit(1, wanted, add_spec(1, 1))
            answer = stream.answer()
            assert answer.call_id == 1
            assert [t.result_pushed for t in answer.submit.tasks] == [True, False]
            pushed = stream.answer()
            assert pushed.call_id == 0 and pushed.WhichOneof("reply") == "pushed"
            (result,) = pushed.pushed.results
            assert (result.task_id, result.state, result.result.data) == (
                answer.submit.tasks[0].id, task_pb2.TASK_STATE_SUCCEEDED, b"42")
            # A duplicate of a finished task is pushed at once; a Submit that waits is not pushed.
            again = task_pb2.TaskSpec()
            again.CopyFrom(wanted)
            again.idempotency_key = "k1"
            stream.submit(2, again)
            first = stream.answer()
            wait_for(lambda: task_service_pb2_grpc.TaskServiceStub(channel).GetResult(
                task_service_pb2.GetResultRequest(task_id=first.submit.tasks[0].id)).state == 4, 30,
                what="the keyed task to finish")
            while not stream.answers.empty():  # its own push
                stream.answer()
            stream.submit(3, again)
            dup = stream.answer()
            assert dup.submit.tasks[0].duplicate and dup.submit.tasks[0].result_pushed
            assert stream.answer().pushed.results[0].task_id == first.submit.tasks[0].id
            stream.submit(4, wanted, wait_results=Duration(seconds=10))
            waited = stream.answer()
            assert waited.call_id == 4 and not waited.submit.tasks[0].result_pushed
            assert waited.submit.results[0].state == task_pb2.TASK_STATE_SUCCEEDED
        finally:
            stream.close()
        unary = task_service_pb2_grpc.TaskServiceStub(channel).Submit(task_service_pb2.SubmitRequest(tasks=[wanted]))
        assert not unary.tasks[0].result_pushed


def test_async_client_results_come_pushed(cluster: Cluster, scheduler: str, tmp_path: Path) -> None:
    cluster.worker(scheduler, concurrency=4)
    gate = tmp_path / "gate"

    async def main() -> None:
        async with AsyncClient(scheduler) as client:
            pushed = client._pipeline.pushed  # type: ignore[union-attr]
            handles = [await client.submit("t.add", [i, 5]) for i in range(10)]
            ids = [await h.sent() for h in handles]
            waiting = await client.submit("t.wait_file", [str(gate), "late"])
            later = asyncio.create_task(waiting.result(timeout=30))
            gate.touch()
            assert await later == "late"
            while not all((s := pushed.slot(i)) is not None and s.done() for i in ids):
                await asyncio.sleep(0.01)
            assert [await h.result(timeout=10) for h in handles] == [i + 5 for i in range(10)]
            assert await client.results(handles, timeout=10) == [i + 5 for i in range(10)]

    asyncio.run(main())


def test_pipeline_request_field_numbers_are_stable() -> None:
    """push_result and the pushed reply are additive fields of v1 (wire compatibility)."""
    assert task_pb2.TaskSpec.DESCRIPTOR.fields_by_name["push_result"].number == 16
    assert task_service_pb2.SubmittedTask.DESCRIPTOR.fields_by_name["result_pushed"].number == 5
    assert task_service_pb2.PipelineResponse.DESCRIPTOR.fields_by_name["pushed"].number == 5
    assert PipelineRequest.DESCRIPTOR.fields_by_name["submit"].number == 2
