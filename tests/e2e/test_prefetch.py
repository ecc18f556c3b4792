"""Worker --prefetch with real worker processes: leases held beyond the running slots.

A worker with --concurrency 1 --prefetch 3 holds up to four leases but runs one handler at
a time; on SIGTERM the prefetched leases go back at once (another worker runs them) while
the running one finishes; a prefetched task that is cancelled ends CANCELLED unrun. Each
case runs with a plain-function handler (the worker's thread queue) and an async one (the
worker's own waiting list). Handlers leave files behind (tests/apps/prefetch.py), so the
test sees which ran, where, in which order and how many at once.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from pathlib import Path

import pytest

from conveyor import Call, Client, TaskCancelled, TaskState
from conveyor.common import submit_request
from conveyor.v1 import task_pb2
from tests.harness import Cluster, CompletionCounter, Proc, connected, wait_for, worker_id

APP = "tests.apps.prefetch:app"
HANDLERS = [pytest.param("pf.track", id="sync"), pytest.param("pf.atrack", id="async")]
ACTIVE, QUEUED = task_pb2.TASK_STATE_ACTIVE, task_pb2.TASK_STATE_QUEUED


def entered(folder: Path, worker: Proc) -> list[tuple[str, int]]:
    """(label, handlers of that process running at its entry) per handler entry of `worker`."""
    log = folder / f"entered-{worker.popen.pid}.log"
    lines = log.read_text().split("\n") if log.exists() else []
    return [(label, int(count)) for label, count in (line.split() for line in lines if line)]


def states(client: Client, ids: list[str]) -> list[TaskState]:
    return [TaskState(client.get_task(i).state) for i in ids]


@pytest.mark.parametrize("name", HANDLERS)
def test_one_runs_at_a_time_while_four_leases_are_held(cluster: Cluster, redis_url: str, tmp_path: Path,
                                                       name: str) -> None:
    sched, target = cluster.scheduler(redis_url)
    worker = cluster.worker(target, APP, "--prefetch", "3", concurrency=1)
    connected(sched, worker)
    gate = tmp_path / "gate"
    with Client(target) as client:
        calls = [Call(name, [str(tmp_path), f"t{i}", str(gate)]) for i in range(6)]
        resp = client._stub.Submit(submit_request(calls), timeout=30)
        ids = [t.id for t in resp.tasks]
        assert [t.state for t in resp.tasks] == [ACTIVE] * 4 + [QUEUED] * 2  # credit = concurrency + prefetch
        wait_for(lambda: entered(tmp_path, worker), what="the first handler to start")
        assert states(client, ids) == [TaskState.ACTIVE] * 4 + [TaskState.QUEUED] * 2
        assert entered(tmp_path, worker) == [("t0", 1)]  # the three prefetched ones wait
        gate.touch()
        assert client.results(ids, timeout=30) == [f"t{i}" for i in range(6)]
        assert {client.get_task(i).worker_id for i in ids} == {worker_id(worker)}
    assert entered(tmp_path, worker) == [(f"t{i}", 1) for i in range(6)]  # never two at once
    assert (tmp_path / "order.log").read_text().split() == [f"t{i}" for i in range(6)]


@pytest.mark.parametrize("count", [
    pytest.param(4, id="all-credit-used"),
    pytest.param(2, id="credit-left"),  # a drain report's hand-back must not be leased back to it
])
@pytest.mark.parametrize("name", HANDLERS)
def test_sigterm_hands_prefetched_tasks_back_at_once(
        cluster: Cluster, redis_url: str, tmp_path: Path, completions: Callable[[str], CompletionCounter],
        name: str, count: int) -> None:
    sched, target = cluster.scheduler(redis_url)
    counter = completions(redis_url)
    leaving = cluster.worker(target, APP, "--prefetch", "3", concurrency=1, name="leaving")
    connected(sched, leaving)
    shut, open_gate = tmp_path / "shut", tmp_path / "open"
    open_gate.touch()
    with Client(target) as client:
        calls = [Call(name, [str(tmp_path), f"t{i}", str(shut if i == 0 else open_gate)]) for i in range(count)]
        ids = [h.id for h in client.submit_many(calls)]
        wait_for(lambda: entered(tmp_path, leaving), what="t0 to start")
        assert states(client, ids) == [TaskState.ACTIVE] * count  # t0 runs, the rest are prefetched
        leaving.popen.send_signal(signal.SIGTERM)
        wait_for(lambda: "draining: 1 tasks in flight" in leaving.output(), what="the worker to drain")
        wait_for(lambda: states(client, ids) == [TaskState.ACTIVE] + [TaskState.QUEUED] * (count - 1),
                 what="the prefetched tasks to be handed back while t0 runs")
        staying = cluster.worker(target, APP, concurrency=4, name="staying")
        assert client.results(ids[1:], timeout=30) == [f"t{i}" for i in range(1, count)]
        assert client.get_task(ids[0]).state == TaskState.ACTIVE  # still in its grace period
        shut.touch()
        assert leaving.popen.wait(30) == 0
        assert client.handle(ids[0]).result(timeout=5) == "t0"
        tasks = [client.get_task(i) for i in ids]
    assert [t.worker_id for t in tasks] == [worker_id(leaving)] + [worker_id(staying)] * (count - 1)
    assert entered(tmp_path, leaving) == [("t0", 1)]  # the leaving worker ran only t0
    wait_for(lambda: sum(counter.counts[i] for i in ids) >= count, what="every completion announced")
    counter.stop()
    assert [counter.counts[i] for i in ids] == [1] * count
    # One lease before the hand-back, one run after it: a handed-back task is not leased again meanwhile.
    assert [t.attempt for t in tasks] == [1] + [2] * (count - 1)


@pytest.mark.parametrize("name", HANDLERS)
def test_cancelling_a_prefetched_task_ends_it_unrun(cluster: Cluster, redis_url: str, tmp_path: Path,
                                                     name: str) -> None:
    sched, target = cluster.scheduler(redis_url)
    worker = cluster.worker(target, APP, "--prefetch", "2", concurrency=1)
    connected(sched, worker)
    shut, open_gate = tmp_path / "shut", tmp_path / "open"
    open_gate.touch()
    with Client(target) as client:
        handles = client.submit_many([Call(name, [str(tmp_path), "t0", str(shut)]),
                                      Call(name, [str(tmp_path), "victim", str(open_gate)]),
                                      Call(name, [str(tmp_path), "t2", str(open_gate)])])
        wait_for(lambda: entered(tmp_path, worker), what="t0 to start")
        assert [h.state for h in handles] == [TaskState.ACTIVE] * 3
        assert handles[1].cancel() is TaskState.ACTIVE  # asked to stop through its worker
        # Waiting in the worker (async: its prefetch list; sync: the threads' queue): reported
        # cancelled as soon as the worker hears of it, while t0 still runs.
        wait_for(lambda: handles[1].state is TaskState.CANCELLED, what="the prefetched task to be cancelled")
        assert handles[0].state is TaskState.ACTIVE
        shut.touch()
        assert handles[0].result(timeout=30) == "t0"
        with pytest.raises(TaskCancelled):
            handles[1].result(timeout=30)
        assert handles[2].result(timeout=30) == "t2"
        assert handles[1].info().cancel_requested
    assert [label for label, _ in entered(tmp_path, worker)] == ["t0", "t2"]  # the victim never ran
    assert (tmp_path / "order.log").read_text().split() == ["t0", "t2"]
