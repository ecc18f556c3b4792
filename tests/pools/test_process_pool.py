"""The process pool (`--pool processes`): hard limits that stop a task, crashes, recycling,
autoscale, cancel, per-task pools and a clean shutdown, with real worker processes."""

from __future__ import annotations

import os
import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from conveyor import Client, TaskFailed, TaskState
from tests.harness import Cluster, Proc, connected, process_group, wait_for, worker_id

APP = "tests.apps.pool:app"


def gone(pid: int) -> bool:
    """The process has ended and been reaped (its memory is returned)."""
    return not Path(f"/proc/{pid}").exists()


class Stack:
    def __init__(self, cluster: Cluster, redis_url: str) -> None:
        self.cluster = cluster
        self.scheduler, self.target = cluster.scheduler(redis_url)
        self.client = Client(self.target)

    def worker(self, *args: str, concurrency: int = 1, pool: str = "processes") -> Proc:
        proc = self.cluster.worker(self.target, APP, "--pool", pool, *args, concurrency=concurrency)
        connected(self.scheduler, proc)
        return proc


@pytest.fixture
def stack(cluster: Cluster, redis_url: str) -> Iterator[Stack]:
    s = Stack(cluster, redis_url)
    yield s
    s.client.close()


def child_pid(marker: Path) -> int:
    return int(wait_for(lambda: marker.exists() and marker.read_text(), what=f"{marker.name} to start"))


@pytest.mark.parametrize("name", ["p.spin", "p.sleep_forever", "p.c_block"])
def test_the_hard_limit_stops_a_runaway_task(stack: Stack, tmp_path: Path, name: str) -> None:
    """Pure-Python loop, sleep, C call holding the GIL: each stopped at its limit (+1 s), the
    attempt TimeLimitExceeded and retried, the child's memory returned, the slot serving on."""
    stack.worker()
    marker = tmp_path / "started"
    handle = stack.client.submit(name, [str(marker)], timeout=1.5, max_retries=1, retry_backoff=0)
    first = child_pid(marker)
    marker.unlink()
    second = child_pid(marker)  # the retry, in a fresh child
    assert second != first
    wait_for(lambda: gone(first), 5, what="the first child to be gone")
    with pytest.raises(TaskFailed) as failed:
        handle.result(timeout=30)
    assert failed.value.error_type == "TimeLimitExceeded"
    record = stack.client.get_task(handle.id)
    assert (record.state, record.attempt) == (TaskState.DEAD, 2)
    for attempt in record.attempts:
        assert attempt.error.type == "TimeLimitExceeded"
        ran = (attempt.ended_at.ToMilliseconds() - attempt.started_at.ToMilliseconds()) / 1000
        assert 1.4 <= ran <= 2.5, ran
    wait_for(lambda: gone(second), 5, what="the second child to be gone")
    assert stack.client.submit("p.add", [2, 3]).result(timeout=30) == 5


@pytest.mark.parametrize("how", ["segfault", "exit"])
def test_a_child_that_dies_is_worker_lost_and_retried(stack: Stack, tmp_path: Path, how: str) -> None:
    worker = stack.worker()
    handle = stack.client.submit("p.crash", [how, str(tmp_path / "once")], max_retries=1, retry_backoff=0)
    assert handle.result(timeout=30) == "survived"
    record = stack.client.get_task(handle.id)
    assert (record.state, record.attempt) == (TaskState.SUCCEEDED, 2)
    assert [a.error.type for a in record.attempts] == ["WorkerLost"]
    assert worker.alive()
    assert stack.client.submit("p.add", [1, 1]).result(timeout=30) == 2


def test_cancel_of_a_running_cpu_bound_task_ends_it_within_a_second(stack: Stack, tmp_path: Path) -> None:
    stack.worker()
    marker = tmp_path / "started"
    handle = stack.client.submit("p.spin", [str(marker)], timeout=600)
    pid = child_pid(marker)
    wait_for(lambda: stack.client.get_task(handle.id).state == TaskState.ACTIVE, what="the task to be ACTIVE")
    asked = time.monotonic()
    stack.client.cancel(handle.id)
    wait_for(lambda: gone(pid), 1.0, interval=0.01, what="the child running it to be gone")
    wait_for(lambda: stack.client.get_task(handle.id).state == TaskState.CANCELLED, 5, what="CANCELLED")
    assert time.monotonic() - asked < 1.5
    assert stack.client.submit("p.add", [1, 2]).result(timeout=30) == 3


def test_max_tasks_per_child_replaces_the_child_after_n_tasks(stack: Stack) -> None:
    stack.worker("--max-tasks-per-child", "3")
    pids = [stack.client.submit("p.pid", [i]).result(timeout=30)[0] for i in range(7)]
    assert pids[0] == pids[1] == pids[2] != pids[3]
    assert pids[3] == pids[4] == pids[5] != pids[6]
    assert len(set(pids)) == 3


def test_max_memory_per_child_replaces_the_child_after_the_task_that_crossed_it(stack: Stack) -> None:
    stack.worker("--max-memory-per-child", "150")
    first = stack.client.submit("p.hog", [80]).result(timeout=30)  # under the line: the child stays
    second = stack.client.submit("p.hog", [80]).result(timeout=30)  # crosses it, and completes
    third = stack.client.submit("p.hog", [1]).result(timeout=30)
    assert first == second != third
    wait_for(lambda: gone(second), 5, what="the child past the line to be gone")


def test_autoscale_grows_under_a_backlog_and_shrinks_when_idle(stack: Stack) -> None:
    worker = stack.worker("--autoscale", "4,1", "--autoscale-keepalive", "1")
    wid = worker_id(worker)
    assert stack.client.admin.get_worker(wid).concurrency == 1
    handles = [stack.client.submit("p.sleep", [0.4, i]) for i in range(24)]
    wait_for(lambda: stack.client.admin.get_worker(wid).concurrency == 4, 20, what="4 slots")
    assert [h.result(timeout=60) for h in handles] == list(range(24))
    wait_for(lambda: stack.client.admin.get_worker(wid).concurrency == 1, 20, what="back to 1 slot")
    assert stack.client.submit("p.add", [1, 2]).result(timeout=30) == 3


def test_each_task_runs_in_its_pool_and_only_workers_running_it_are_leased_it(stack: Stack) -> None:
    threads_only = stack.worker(pool="threads", concurrency=2)
    assert "p.pid" not in stack.client.admin.get_worker(worker_id(threads_only)).task_names
    assert "p.context" in stack.client.admin.get_worker(worker_id(threads_only)).task_names
    cpu = stack.client.submit("p.pid", ["cpu"])
    assert stack.client.submit("p.context").result(timeout=30)["pid"] == threads_only.popen.pid
    assert stack.client.get_task(cpu.id).state == TaskState.QUEUED  # no worker runs its pool yet
    both = stack.worker("--queues", "default", pool="threads,processes", concurrency=2)
    pid, value = cpu.result(timeout=30)
    assert value == "cpu" and pid not in (both.popen.pid, threads_only.popen.pid)
    assert stack.client.get_task(cpu.id).worker_id == worker_id(both)


def test_sigterm_lets_children_finish_and_leaves_none_behind(stack: Stack, tmp_path: Path) -> None:
    worker = stack.worker(concurrency=2)
    handles = [stack.client.submit("p.sleep", [1.0, i, str(tmp_path / f"started-{i}")]) for i in range(2)]
    for i in range(2):
        child_pid(tmp_path / f"started-{i}")
    assert worker.terminate() == 0
    assert [h.result(timeout=30) for h in handles] == [0, 1]
    wait_for(lambda: not process_group(worker.popen.pid), 5, what="no process of the worker's group left")


def test_a_sigkilled_worker_takes_its_children_with_it(stack: Stack, tmp_path: Path) -> None:
    worker = stack.worker(concurrency=2)
    marker = tmp_path / "started"
    handle = stack.client.submit("p.sleep_forever", [str(marker)], timeout=600, max_retries=1)
    child = child_pid(marker)
    os.kill(worker.popen.pid, signal.SIGKILL)
    worker.popen.wait(10)
    wait_for(lambda: gone(child) and not process_group(worker.popen.pid), 5, what="no orphaned child")
    wait_for(lambda: stack.client.get_task(handle.id).state == TaskState.QUEUED, 5,
             what="its lease to return at once")


def test_sigterm_hands_back_what_outlives_the_grace_period(stack: Stack, tmp_path: Path) -> None:
    worker = stack.worker("--grace-period", "0.5")
    handle = stack.client.submit("p.sleep", [600, "late", str(tmp_path / "started")], timeout=900)
    child = child_pid(tmp_path / "started")
    assert worker.terminate() == 0
    wait_for(lambda: gone(child) and not process_group(worker.popen.pid), 5, what="its child to be stopped")
    record = stack.client.get_task(handle.id)
    assert (record.state, len(record.attempts)) == (TaskState.QUEUED, 1)  # handed back, not failed
    assert not record.attempts[0].error.type
    replacement = stack.worker()
    wait_for(lambda: stack.client.get_task(handle.id).worker_id == worker_id(replacement), 10,
             what="the task to be leased again")


def test_children_that_die_at_start_are_replaced_after_a_growing_pause(stack: Stack) -> None:
    worker = stack.cluster.worker(stack.target, "tests.apps.child_fails:app", "--pool", "processes",
                                  "--start-method", "spawn", concurrency=1)
    connected(stack.scheduler, worker)
    pauses = wait_for(lambda: (found := re.findall(r"before running a task; starting another in ([\d.]+)s",
                                                   worker.output())) and len(found) >= 4 and found,
                      30, what="four children to die at start")
    assert [float(p) for p in pauses[:4]] == [0.1, 0.2, 0.4, 0.8]
    assert worker.alive()


def test_a_cancel_sent_to_a_child_that_dies_first_still_ends_the_task_cancelled(stack: Stack,
                                                                                  tmp_path: Path) -> None:
    """With prefetch a child holds jobs behind the one it runs; when it dies, a job cancelled
    meanwhile ends CANCELLED instead of starting in the next child."""
    stack.worker("--prefetch", "4")
    release = tmp_path / "release"
    crashing = stack.client.submit("p.crash", ["exit", str(tmp_path / "once"), str(release)], max_retries=1,
                                   retry_backoff=0)
    wait_for((tmp_path / "once").exists, what="the first task to start")
    behind = stack.client.submit("p.sleep", [0, "ran", str(tmp_path / "behind-ran")])
    wait_for(lambda: stack.client.get_task(behind.id).state == TaskState.ACTIVE, what="the second to be leased")
    stack.client.cancel(behind.id)
    release.touch()
    assert crashing.result(timeout=30) == "survived"
    wait_for(lambda: stack.client.get_task(behind.id).state == TaskState.CANCELLED, 10, what="CANCELLED")
    assert stack.client.get_task(behind.id).attempt == 1
    assert not (tmp_path / "behind-ran").exists()
