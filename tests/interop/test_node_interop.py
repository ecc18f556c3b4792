"""Interop: a Node.js producer and worker built only from proto/ talk to the real scheduler.

They prove the contract is enough for another language: Python produces for a Node worker,
Node produces for a Python worker, and Node talks to Node with no Python in the task path; a Node
producer submits a chord (WorkflowService) and follows it to its result, run by either worker.
Node is required: these tests fail (they do not skip) when it is missing.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from conveyor import Call, Client, SubmitOptions, TaskFailed, TaskState, WorkflowState
from tests.harness import ROOT, Cluster, Proc, spawn, wait_for

INTEROP = Path(__file__).resolve().parent
PRODUCER = INTEROP / "producer.js"
WORKFLOW = INTEROP / "workflow.js"
WORKER = INTEROP / "worker.js"
QUEUE = "interop"
SUCCEEDED = "TASK_STATE_SUCCEEDED"


def node_binary() -> str:
    """The node executable; asserts (so the calling test fails, never skips) when Node is missing."""
    path = shutil.which("node")
    assert path, "node is not on PATH: the interop tests need Node.js (they do not skip without it)"
    for module in ("@grpc/grpc-js", "@grpc/proto-loader"):
        assert (ROOT / "node_modules" / module / "package.json").exists(), (
            f"{module} is missing from node_modules: run `npm ci` (or `make install`)")
    return path


def start_node_worker(node: str, cluster: Cluster, target: str, queue: str = QUEUE) -> Proc:
    proc = spawn("node-worker", [node, str(WORKER), target, queue], cluster.log_dir)
    cluster.procs.append(proc)
    wait_for(lambda: "ready" in proc.output().splitlines() or not proc.alive(), 15, what="the node worker's hello")
    assert proc.alive(), f"node worker died:\n{proc.output()}"
    return proc


def produce(node: str, target: str, name: str, args: object, queue: str | None = None,
            traceparent: str | None = None) -> tuple[int, dict[str, object]]:
    """Runs producer.js once; returns its exit status and the JSON line it printed."""
    cmd = [node, str(PRODUCER), target, name, json.dumps(args)] + ([queue] if queue else [])
    env = {**os.environ}
    env.pop("CONVEYOR_TRACEPARENT", None)
    if traceparent:
        env["CONVEYOR_TRACEPARENT"] = traceparent
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd=ROOT, env=env, check=False)
    lines = done.stdout.splitlines()
    assert len(lines) == 1, f"producer printed {lines!r} (status {done.returncode}); stderr:\n{done.stderr}"
    return done.returncode, json.loads(lines[0])


def submit_chord(node: str, target: str, header: str, callback: str, header_args: list[list[int]],
                 queue: str | None = None) -> tuple[int, dict[str, Any], str]:
    """Runs workflow.js once; returns its exit status, the JSON line it printed, and its stderr."""
    cmd = [node, str(WORKFLOW), target, header, callback, json.dumps(header_args)] + ([queue] if queue else [])
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=90, cwd=ROOT, check=False)
    lines = done.stdout.splitlines()
    assert len(lines) == 1, f"workflow.js printed {lines!r} (status {done.returncode}); stderr:\n{done.stderr}"
    return done.returncode, json.loads(lines[0]), done.stderr


HEADER_ARGS = [[5, 5], [1, 0], [4, 4], [0, 3], [2, 7]]
"""The chord's five headers' args: sums 10, 1, 8, 3, 9, not in sorted order, so the callback's
list shows the order of its parents."""


@pytest.mark.parametrize("worker", ["python", "node"])
def test_node_producer_submits_a_chord_whose_callback_gets_the_headers_results_in_order(
        worker: str, cluster: Cluster, scheduler: str, client: Client) -> None:
    node = node_binary()
    if worker == "node":
        start_node_worker(node, cluster, scheduler)
        names, queue = ("interop.add", "interop.echo"), QUEUE
    else:
        cluster.worker(scheduler, "tests.apps.workflows:app", queues="default")
        names, queue = ("wf.add", "wf.echo"), None
    status, out, stderr = submit_chord(node, scheduler, *names, HEADER_ARGS, queue)
    assert (status, out["state"], out["error"]) == (0, "WORKFLOW_STATE_SUCCEEDED", None), stderr
    sums = [a + b for a, b in HEADER_ARGS]
    # The one leaf, the callback, is the workflow's result: it was called with the list as args[0].
    assert out["result"] == {"args": [sums], "kwargs": {}}
    assert [n["key"] for n in out["nodes"]] == ["h0", "h1", "h2", "h3", "h4", "callback"]
    assert {n["state"] for n in out["nodes"]} == {SUCCEEDED} and all(n["task_id"] for n in out["nodes"])
    assert out["updates"] >= 1, stderr  # one message when it had ended before the stream opened

    snapshot = client.workflow(out["id"]).get()  # the SDK reads what Node submitted
    assert snapshot.state is WorkflowState.SUCCEEDED and snapshot.outcome() == {"args": [sums], "kwargs": {}}
    assert snapshot.node("callback").parents == ("h0", "h1", "h2", "h3", "h4")
    assert snapshot.node("callback").receives == "list"
    for n in snapshot.nodes[:-1]:
        task = client.get_task(n.task_id)
        assert (task.workflow_id, task.workflow_node, task.name) == (out["id"], n.key, names[0])
        assert client.handle(n.task_id).result(timeout=5) == sums[int(n.key[1:])]


def test_python_producer_node_worker(cluster: Cluster, scheduler: str, client: Client) -> None:
    node = node_binary()
    start_node_worker(node, cluster, scheduler)

    assert client.submit("interop.add", [2, 40], queue=QUEUE).result(timeout=30) == 42
    assert client.submit("interop.upper", ["conveyor"], queue=QUEUE).result(timeout=30) == "CONVEYOR"

    handles = client.submit_many(
        [Call("interop.add", [i, i], {}, SubmitOptions(queue=QUEUE)) for i in range(50)])
    assert len(handles) == 50
    assert [h.result(timeout=30) for h in handles] == [2 * i for i in range(50)]


def test_node_worker_reports_failures(cluster: Cluster, scheduler: str, client: Client) -> None:
    node = node_binary()
    start_node_worker(node, cluster, scheduler)

    with pytest.raises(TaskFailed) as failed:
        client.submit("interop.fail", ["from a node handler"], queue=QUEUE).result(timeout=30)
    assert failed.value.state == "FAILED"
    assert failed.value.error_type == "TypeError"
    assert failed.value.error_message == "from a node handler"
    assert "worker.js" in failed.value.traceback

    # the worker keeps going after a failure (its credit came back with the failed ack)
    assert client.submit("interop.add", [1, 1], queue=QUEUE).result(timeout=30) == 2

    # A name the node worker does not declare is never leased to it: it waits, and says why.
    missing = client.submit("interop.missing", [1], queue=QUEUE)
    wait_for(lambda: "interop.missing" in client.get_task(missing.id).waiting_reason, 15,
             what="the unknown task to be parked")
    assert client.submit("interop.add", [2, 2], queue=QUEUE).result(timeout=30) == 4  # not blocked by it
    assert missing.cancel() == TaskState.CANCELLED


def test_node_producer_python_worker(cluster: Cluster, scheduler: str, client: Client) -> None:
    node = node_binary()
    cluster.worker(scheduler, "tests.apps.basic:app", queues="default")

    status, out = produce(node, scheduler, "t.add", [20, 22])
    assert (status, out["state"], out["result"], out["error"]) == (0, SUCCEEDED, 42, None)
    assert isinstance(out["id"], str) and out["id"]
    assert client.handle(out["id"]).result(timeout=5) == 42

    nested = {"s": "héllo ✓", "n": [1, 2.5, -3, None, True, False], "o": {"deep": [{"x": []}, {}]}, "e": ""}
    traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    status, out = produce(node, scheduler, "t.echo", [nested], traceparent=traceparent)
    assert (status, out["state"], out["result"]) == (0, SUCCEEDED, nested)
    task = client.get_task(out["id"])
    assert task.queue == "default"
    assert dict(task.headers) == {"traceparent": traceparent}

    status, out = produce(node, scheduler, "t.fail", ["from node"])
    assert status == 1
    assert out["state"] == "TASK_STATE_FAILED" and out["result"] is None
    assert out["error"]["type"] == "ValueError" and out["error"]["message"] == "from node"


def test_node_producer_node_worker(cluster: Cluster, scheduler: str) -> None:
    node = node_binary()
    worker = start_node_worker(node, cluster, scheduler)

    status, out = produce(node, scheduler, "interop.add", [20, 22], queue=QUEUE)
    assert (status, out["state"], out["result"], out["error"]) == (0, SUCCEEDED, 42, None)

    status, out = produce(node, scheduler, "interop.upper", ["node"], queue=QUEUE)
    assert (status, out["state"], out["result"]) == (0, SUCCEEDED, "NODE")

    assert worker.terminate(timeout=15) == 0, worker.output()


def test_node_worker_heartbeats(cluster: Cluster, redis_url: str) -> None:
    node = node_binary()
    _, target = cluster.scheduler(redis_url, "--heartbeat-interval", "0.1")
    worker = start_node_worker(node, cluster, target)

    # a heartbeat the scheduler could not parse would end the stream; several must go through
    wait_for(lambda: "heartbeat 5" in worker.output() or not worker.alive(), 15, what="five heartbeats")
    assert worker.alive(), worker.output()
    with Client(target) as client:
        assert client.submit("interop.add", [40, 2], queue=QUEUE).result(timeout=30) == 42
    assert "stream failed" not in worker.output()
    assert worker.terminate(timeout=15) == 0, worker.output()
