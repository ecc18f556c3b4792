"""A rolling deploy: old and new workers share a queue while a task only the new release knows
is submitted. Name-aware dispatch leases each task only to a worker that declares its name,
so nothing fails with UnknownTask: the new task waits (GetTask says why) until a new worker
is there, and the old workers keep running the tasks they know meanwhile."""

from __future__ import annotations

import collections
from pathlib import Path

from conveyor import Call, Client, SubmitOptions, TaskState
from tests.harness import Cluster, connected, worker_id

OLD, NEW = "tests.apps.rolling:old", "tests.apps.rolling:new"


def test_rolling_deploy_runs_every_task_on_a_worker_that_knows_it(cluster: Cluster, redis_url: str,
                                                                    tmp_path: Path) -> None:
    sched, target = cluster.scheduler(redis_url)
    olds = [cluster.worker(target, OLD, concurrency=4, name=f"old{n}") for n in range(2)]
    for worker in olds:
        connected(sched, worker)
    with Client(target) as client:
        def submit(start: int) -> tuple[list[str], list[str]]:
            calls = [Call("r.added" if i % 2 else "r.keep", [str(tmp_path), i], {}, SubmitOptions(queue="default"))
                     for i in range(start, start + 200)]
            ids = [h.id for h in client.submit_many(calls)]
            return ids[0::2], ids[1::2]

        keep, added = submit(0)
        assert client.results(keep, timeout=60) == list(range(0, 200, 2))  # not blocked by the unknown ones
        waiting = client.get_task(added[0])
        assert TaskState(waiting.state) is TaskState.QUEUED
        assert "r.added" in waiting.waiting_reason

        new = cluster.worker(target, NEW, concurrency=4, name="new")
        keep2, added2 = submit(200)  # while old and new run side by side
        assert client.results(added + added2, timeout=60) == [-i for i in range(1, 400, 2)]
        assert client.results(keep2, timeout=60) == list(range(200, 400, 2))
        tasks = [client.get_task(i) for i in keep + added + keep2 + added2]
    assert {TaskState(t.state) for t in tasks} == {TaskState.SUCCEEDED}
    assert {t.worker_id for t in tasks if t.name == "r.added"} == {worker_id(new)}
    assert all(t.attempt == 1 for t in tasks), "a task ran on a worker that could not run it"
    runs = collections.Counter(line.split()[0] for log in tmp_path.glob("exec-*.log")
                               for line in log.read_text().splitlines())
    assert set(runs) == {t.id for t in tasks} and set(runs.values()) == {1}
    assert sched.output().count("r.added wait") == 1  # said once, however many were parked
    assert "UnknownTask" not in "".join(w.output() for w in [*olds, new])
