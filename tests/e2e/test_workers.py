"""End to end with real worker processes: order, crashes, replicas, restarts, shutdown.

Every test checks that each submitted task ends in exactly one terminal state with the
right result; where a crash forces a re-run, completions are counted on the scheduler's
completion channel to prove each task was recorded exactly once.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable
from pathlib import Path

from conveyor import Call, Client, SubmitOptions, TaskState
from tests.harness import Cluster, CompletionCounter, wait_for


def results_of(client: Client, ids: list[str], timeout: float = 60) -> list[object]:
    return [client.handle(i).result(timeout=timeout) for i in ids]


def test_worker_runs_in_priority_order(cluster: Cluster, scheduler: str, client: Client, tmp_path: Path) -> None:
    log = tmp_path / "order.txt"
    calls = [Call("t.record", [str(log), f"{p}-{i}"], {}, SubmitOptions(priority=p))
             for i in range(200) for p in [(i * 7) % 10]]
    handles = client.submit_many(calls)
    cluster.worker(scheduler, concurrency=1)
    results_of(client, [h.id for h in handles])
    executed = log.read_text().split()
    expected = [c.args[1] for c in sorted(calls, key=lambda c: -int(c.args[1].split("-")[0]))]
    assert executed == expected


def test_a_worker_on_several_queues_takes_what_waited_in_each(cluster: Cluster, scheduler: str,
                                                               client: Client) -> None:
    """Tasks stored before the worker connects run, in every queue it serves: the hello's dispatch
    round of one queue holds the worker's credit while it claims, and the other queues' rounds,
    which found no credit meanwhile, must go again (they used to wait for the next submit)."""
    handles = [client.submit("t.add", [i, 1], queue=q) for i, q in enumerate(["second", "third", "second"])]
    cluster.worker(scheduler, queues="first,second,third")
    assert results_of(client, [h.id for h in handles], timeout=20) == [1, 2, 3]


def test_sigkilled_worker_tasks_finish_elsewhere_exactly_once(
        cluster: Cluster, redis_url: str, tmp_path: Path, completions: Callable[[str], CompletionCounter]) -> None:
    # A long lease TTL proves the leases come back because the stream broke, not via the reaper.
    _, target = cluster.scheduler(redis_url, "--lease-ttl", "120")
    counter = completions(redis_url)
    gate = tmp_path / "gate"
    with Client(target) as client:
        ids = [h.id for h in client.submit_many([Call("t.wait_file", [str(gate), i]) for i in range(40)])]
        doomed = cluster.worker(target, concurrency=8, name="doomed")
        held = wait_for(lambda: [i for i in ids if client.get_task(i).state == TaskState.ACTIVE], what="leases held")
        wait_for(lambda: len([i for i in ids if client.get_task(i).state == TaskState.ACTIVE]) == 8,
                 what="8 leases held by the doomed worker")
        doomed.kill()
        cluster.worker(target, concurrency=8, name="survivor")
        gate.touch()
        assert results_of(client, ids) == list(range(40))
        reruns = [i for i in ids if client.get_task(i).attempt == 2]
        assert set(held) <= set(reruns) and len(reruns) == 8
        assert all(client.get_task(i).worker_id.startswith("survivor") for i in reruns)
        for i in reruns:  # the doomed worker's attempt came back unfinished: in the history, without an error
            (back,) = client.get_task(i).attempts
            assert back.attempt == 1 and back.worker_id.startswith("doomed") and not back.HasField("error")
            assert back.ended_at.ToMilliseconds() >= back.started_at.ToMilliseconds() > 0
    wait_for(lambda: sum(counter.counts[i] for i in ids) >= 40, what="all completions announced")
    counter.stop()
    assert {i: counter.counts[i] for i in ids} == dict.fromkeys(ids, 1)


def test_two_replicas_share_one_redis(cluster: Cluster, redis_url: str) -> None:
    _, front = cluster.scheduler(redis_url, name="replica-a")
    _, back = cluster.scheduler(redis_url, name="replica-b")
    cluster.worker(back)  # the only worker is connected to the other replica
    with Client(front) as via_a, Client(back) as via_b:
        handles = via_a.submit_many([Call("t.add", [i, i]) for i in range(50)])
        waited: dict[str, list[object]] = {}
        ids = [h.id for h in handles]
        threads = [threading.Thread(target=lambda c=c, n=n: waited.__setitem__(n, results_of(c, ids)))
                   for n, c in (("a", via_a), ("b", via_b))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(90)
        assert waited == {"a": [2 * i for i in range(50)], "b": [2 * i for i in range(50)]}


def test_embedded_redis_keeps_queued_tasks_across_restart(cluster: Cluster, tmp_path: Path) -> None:
    data = tmp_path / "embedded"
    proc, target = cluster.scheduler(None, data_dir=data, name="first-run")
    with Client(target) as client:
        ids = [h.id for h in client.submit_many([Call("t.add", [i, 1]) for i in range(300)])]
        ids.append(client.submit("t.add", [1000, 1], countdown=0.5).id)
    assert proc.terminate() == 0
    proc2, target2 = cluster.scheduler(None, data_dir=data, name="second-run")
    with Client(target2) as client:
        assert {client.get_task(i).state for i in ids[:300]} == {TaskState.QUEUED}
        proc2.kill()  # a crash this time: the embedded Redis still flushes on its way down
        wait_for(lambda: not (data / "redis" / "appendonlydir").exists() or _redis_gone(data), what="redis exit")
    _, target3 = cluster.scheduler(None, data_dir=data, name="third-run")
    cluster.worker(target3)
    with Client(target3) as client:
        assert results_of(client, ids) == [i + 1 for i in range(300)] + [1001]


def _redis_gone(data: Path) -> bool:
    import subprocess  # noqa: PLC0415

    out = subprocess.run(["pgrep", "-f", f"--dir {data}"], capture_output=True, check=False)
    return out.returncode != 0


def test_sigterm_finishes_in_flight_tasks(cluster: Cluster, scheduler: str, client: Client, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    worker = cluster.worker(scheduler, concurrency=4)
    handles = client.submit_many([Call("t.wait_file", [str(gate), i]) for i in range(4)])
    wait_for(lambda: all(h.state == TaskState.ACTIVE for h in handles), what="all four running")
    worker.popen.send_signal(signal.SIGTERM)
    wait_for(lambda: "draining: 4 tasks in flight" in worker.output(), what="the worker to start draining")
    gate.touch()  # the in-flight tasks may now finish, inside the grace period
    assert worker.popen.wait(30) == 0
    assert [h.state for h in handles] == [TaskState.SUCCEEDED] * 4
    assert results_of(client, [h.id for h in handles]) == [0, 1, 2, 3]


def test_sigterm_hands_back_what_outlives_the_grace_period(
        cluster: Cluster, scheduler: str, client: Client, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    leaving = cluster.worker(scheduler, "tests.apps.basic:app", "--grace-period", "0.3", concurrency=2,
                             name="leaving")
    handles = client.submit_many([Call("t.wait_file", [str(gate), i]) for i in range(2)])
    wait_for(lambda: all(h.state == TaskState.ACTIVE for h in handles), what="both running")
    assert leaving.terminate() == 0
    assert [h.state for h in handles] == [TaskState.QUEUED] * 2  # handed back at once
    cluster.worker(scheduler, concurrency=2, name="staying")
    gate.touch()
    assert results_of(client, [h.id for h in handles]) == [0, 1]


def test_reaper_returns_leases_of_a_silent_worker_and_fences_its_late_acks(
        cluster: Cluster, redis_url: str, tmp_path: Path, completions: Callable[[str], CompletionCounter]) -> None:
    """A frozen worker keeps its stream open but stops heartbeating: the reaper hands its
    tasks to another worker, and the frozen one's acks are refused when it wakes up."""
    _, target = cluster.scheduler(redis_url, "--lease-ttl", "1", "--heartbeat-interval", "0.3")
    counter = completions(redis_url)
    with Client(target) as client:
        frozen = cluster.worker(target, concurrency=2, name="frozen")
        handles = client.submit_many([Call("t.sleep", [0.5, i]) for i in range(2)])
        wait_for(lambda: all(h.state == TaskState.ACTIVE for h in handles), what="both running on 'frozen'")
        os.kill(frozen.popen.pid, signal.SIGSTOP)
        try:
            wait_for(lambda: all(h.state == TaskState.QUEUED for h in handles), timeout=15, what="the reaper")
            cluster.worker(target, concurrency=2, name="thawed-out")
            assert results_of(client, [h.id for h in handles]) == [0, 1]
        finally:
            os.kill(frozen.popen.pid, signal.SIGCONT)
        wait_for(lambda: "refused" in cluster.procs[0].output(), what="the late acks to be refused")
        assert {client.get_task(h.id).worker_id.split("-")[0] for h in handles} == {"thawed"}
    counter.stop()
    assert [counter.counts[h.id] for h in handles] == [1, 1]


def test_worker_fails_over_to_the_next_replica(cluster: Cluster, redis_url: str) -> None:
    first, a = cluster.scheduler(redis_url, name="replica-a")
    _, b = cluster.scheduler(redis_url, name="replica-b")
    cluster.worker(f"{a},{b}")
    with Client(b) as client:
        assert client.submit("t.add", [1, 1]).result(timeout=30) == 2
        first.kill()
        handles = client.submit_many([Call("t.add", [i, 1]) for i in range(20)])
        assert results_of(client, [h.id for h in handles]) == [i + 1 for i in range(20)]
