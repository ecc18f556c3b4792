"""Workflows end to end: canvases submitted through the SDK, run by a real scheduler (its
WorkflowService) and real worker processes (tests/apps/workflows.py).

Result passing is checked through values (a chain's step computes on its parent's result, a
chord's callback sums its header's), what a node received through `wf.echo`, and how often a
node ran through `log` files its task appends a line to on every execution.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from conveyor import (
    AsyncClient,
    Client,
    TaskCancelled,
    TaskState,
    WorkflowCancelled,
    WorkflowFailed,
    WorkflowState,
    chain,
    chord,
    group,
)
from conveyor.cli import main
from tests.apps.workflows import add, blob, echo, fail, lengths, mark, mul, then, tsum, wait_file
from tests.harness import Cluster, wait_for

APP = "tests.apps.workflows:app"
WAIT = 60.0


@pytest.fixture
def workers(cluster: Cluster, scheduler: str) -> str:
    """A worker of the workflow tasks with room for a wide group; the scheduler's address."""
    cluster.worker(scheduler, APP, concurrency=16)
    return scheduler


def runs(log: Path) -> list[str]:
    """The labels a log recorded, one per execution, in order."""
    return log.read_text().split() if log.exists() else []


def test_chain_passes_each_result_to_the_next_step(workers: str, client: Client) -> None:
    handle = client.submit_workflow(add.s(1, 2) | add.s(10) | mul.s(3))
    assert handle.result(timeout=WAIT) == 39  # (1 + 2 + 10) * 3
    snapshot = handle.get()
    assert snapshot.state is WorkflowState.SUCCEEDED and snapshot.finished_nodes == 3
    assert [(n.key, n.state) for n in snapshot.nodes] == [(k, TaskState.SUCCEEDED) for k in ("0", "1", "2")]
    nodes = handle.nodes()
    assert [h.result(timeout=WAIT) for h in nodes.values()] == [3, 13, 39]
    record = client.get_task(nodes["1"].id)
    assert (record.workflow_id, record.workflow_node) == (handle.id, "1")


def test_group_of_ten_returns_their_results_in_order(workers: str, client: Client) -> None:
    handle = group(add.s(i, i) for i in range(10)).submit(client=client)
    assert handle.result(timeout=WAIT) == [2 * i for i in range(10)]


def test_chord_of_ten_headers_sums_them(workers: str, client: Client) -> None:
    handle = chord(add.s(i, 1) for i in range(10))(tsum.s(), client=client)  # Celery's chord(header)(body)
    assert handle.result(timeout=WAIT) == sum(i + 1 for i in range(10))
    assert handle.get().node("10").parents == tuple(str(i) for i in range(10))


def test_group_piped_into_a_task_is_a_chord(workers: str, client: Client) -> None:
    assert client.submit_workflow(group(add.s(i, 0) for i in range(5)) | tsum.s()).result(timeout=WAIT) == 10


def test_immutable_signature_gets_none_of_its_parents_results(workers: str, client: Client) -> None:
    handle = client.submit_workflow(add.s(1, 1) | echo.si("fixed", k=1) | echo.s())
    assert handle.result(timeout=WAIT) == {"args": [{"args": ["fixed"], "kwargs": {"k": 1}}], "kwargs": {}}


def test_chain_of_groups_gives_the_second_group_the_first_groups_list(workers: str, client: Client) -> None:
    handle = client.submit_workflow(chain(group(add.s(1, 1), add.s(2, 2)), group(tsum.s(), echo.s())))
    assert handle.result(timeout=WAIT) == [6, {"args": [[2, 4]], "kwargs": {}}]


def test_group_of_chains(workers: str, client: Client) -> None:
    handle = client.submit_workflow(group(add.s(1, 1) | mul.s(10), add.s(2, 2) | mul.s(100)))
    assert handle.result(timeout=WAIT) == [20, 400]


def test_chord_inside_a_chain(workers: str, client: Client) -> None:
    canvas = add.s(1, 1) | chord([add.s(10), add.s(20)], tsum.s()) | mul.s(2)
    assert client.submit_workflow(canvas).result(timeout=WAIT) == 68  # (2+10 + 2+20) * 2


def test_chain_inside_a_chord_header(workers: str, client: Client) -> None:
    canvas = chord([add.s(1, 1) | mul.s(3), add.s(5, 5)], tsum.s())
    assert client.submit_workflow(canvas).result(timeout=WAIT) == 16


def test_fail_fast_names_the_failed_node_and_the_callback_never_runs(workers: str, client: Client,
                                                                     tmp_path: Path) -> None:
    log, gate = tmp_path / "runs.log", tmp_path / "gate"
    canvas = chord([add.s(1, 1), fail.s(message="header broke"), wait_file.s(str(gate))],
                   mark.si(str(log), "callback"))
    handle = client.submit_workflow(canvas)
    with pytest.raises(WorkflowFailed, match="node 1") as failed:
        handle.result(timeout=WAIT)
    assert (failed.value.node, failed.value.error_type, failed.value.error_message) == (
        "1", "ValueError", "header broke")
    snapshot = handle.get()
    assert snapshot.state is WorkflowState.FAILED and snapshot.error is not None and snapshot.error.node == "1"
    callback = snapshot.node("3")
    assert (callback.task_id, callback.state) == ("", TaskState.CANCELLED)  # never submitted
    header = client.get_task(snapshot.node("2").task_id)
    assert header.cancel_requested or header.state is TaskState.CANCELLED  # the unfinished header is asked to stop
    gate.touch()  # a plain function in a thread stops when it returns: its outcome is recorded CANCELLED
    wait_for(lambda: handle.get().node("2").state is TaskState.CANCELLED, WAIT, what="the header to end cancelled")
    assert handle.get().finished_nodes == 4
    assert runs(log) == []


def test_continue_runs_the_callback_with_each_headers_result_or_error(workers: str, client: Client) -> None:
    canvas = chord([add.s(1, 2), fail.s(message="nope"), add.s(3, 4)], echo.s())
    handle = client.submit_workflow(canvas, on_failure="continue")
    (entries,) = handle.result(timeout=WAIT)["args"]
    assert entries[0] == {"result": 3} and entries[2] == {"result": 7}
    error = entries[1]["error"]
    assert (error["node"], error["type"], error["message"], error["state"]) == ("1", "ValueError", "nope", "FAILED")
    assert handle.get().state is WorkflowState.SUCCEEDED  # its one leaf, the callback, succeeded


def test_continue_fails_the_workflow_when_a_leaf_fails(workers: str, client: Client) -> None:
    handle = client.submit_workflow(group(add.s(1, 1), fail.s(), add.s(2, 2)), on_failure="continue")
    with pytest.raises(WorkflowFailed, match="node 1"):
        handle.result(timeout=WAIT)
    states = [n.state for n in handle.get().nodes]
    assert states == [TaskState.SUCCEEDED, TaskState.FAILED, TaskState.SUCCEEDED]  # the others ran


def test_cancel_a_running_workflow(workers: str, client: Client, tmp_path: Path) -> None:
    gate, log = tmp_path / "gate", tmp_path / "runs.log"
    handle = client.submit_workflow(wait_file.s(str(gate), 1) | then.s(str(log), "after"))
    wait_for(lambda: handle.get().node("0").state is TaskState.ACTIVE, WAIT, what="the first node to run")
    cancelled = handle.cancel()
    assert cancelled.state is WorkflowState.CANCELLED
    with pytest.raises(WorkflowCancelled):
        handle.result(timeout=WAIT)
    first = handle.nodes()["0"]
    gate.touch()  # the handler returns; its task stays CANCELLED
    with pytest.raises(TaskCancelled):
        first.result(timeout=WAIT)
    second = handle.get().node("1")
    assert (second.task_id, second.state) == ("", TaskState.CANCELLED)
    assert runs(log) == []


def test_retry_runs_only_the_nodes_that_did_not_succeed(workers: str, client: Client, tmp_path: Path) -> None:
    log, broken = tmp_path / "runs.log", tmp_path / "broken"
    broken.touch()
    canvas = mark.s(str(log), "a", 1) | then.s(str(log), "b", str(broken)) | then.s(str(log), "c")
    handle = client.submit_workflow(canvas)
    with pytest.raises(WorkflowFailed, match="node 1"):
        handle.result(timeout=WAIT)
    assert runs(log) == ["a", "b"]
    broken.unlink()
    again = handle.retry()
    assert (again.state, again.run) == (WorkflowState.RUNNING, 2)
    assert handle.result(timeout=WAIT) == 3  # 1, then + 1 twice
    assert runs(log) == ["a", "b", "b", "c"]  # a kept its result; b ran again, c once


def test_watch_sees_every_node_finish(workers: str, client: Client) -> None:
    handle = client.submit_workflow(add.s(1, 2) | add.s(3) | add.s(4))
    snapshots = list(handle.watch(timeout=WAIT))
    assert snapshots[-1].state is WorkflowState.SUCCEEDED and snapshots[-1].finished_nodes == 3
    finished = [s.finished_nodes for s in snapshots]
    assert finished == sorted(finished)


def test_the_async_client(workers: str) -> None:
    async def main_() -> None:
        async with AsyncClient(workers) as aclient:
            handle = await (add.s(1, 2) | add.s(3)).asubmit(client=aclient)
            assert await handle.result(timeout=WAIT) == 6
            assert (await handle.state()) is WorkflowState.SUCCEEDED
            other = await aclient.submit_workflow(chord([add.s(1, 1), add.s(2, 2)], tsum.s()))
            assert [s.state async for s in other.watch(timeout=WAIT)][-1] is WorkflowState.SUCCEEDED
            assert list(await other.nodes()) == ["0", "1", "2"]

    asyncio.run(main_())


def test_the_cli_shows_the_tree(workers: str, client: Client) -> None:
    handle = client.submit_workflow(chord([add.s(1, 1), add.s(2, 2)], tsum.s()))
    handle.result(timeout=WAIT)
    shown = CliRunner().invoke(main, ["-s", workers, "workflow", handle.id])
    assert shown.exit_code == 0, shown.output
    assert "SUCCEEDED" in shown.output and "├── 0" in shown.output and "wf.tsum" in shown.output
    record = json.loads(CliRunner().invoke(main, ["-s", workers, "workflow", handle.id, "--json"]).output)
    assert record["result"]["value"] == 6


def test_a_callback_gets_its_headers_results_past_the_task_payload_limit(workers: str, client: Client) -> None:
    """Three headers of 500,000 characters each: the callback's payload with their results
    (1.5 MB) is past a Submit's 1 MiB payload limit, within a node's 64 MiB (workflow.proto)."""
    handle = client.submit_workflow(chord([blob.s(500_000, c) for c in "abc"], lengths.s()))
    assert handle.result(timeout=WAIT) == [["a", 500_000], ["b", 500_000], ["c", 500_000]]
