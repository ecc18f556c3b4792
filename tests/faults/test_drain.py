"""A graceful drain never re-runs finished work (issue 13, defect 4).

One worker is stopped with SIGTERM and started again 20 times while a steady backlog keeps
it and a second worker busy. A drain ends only after the scheduler has recorded the worker's
last report, so no task that finished during a drain is handed back and run again: every
task runs exactly once and ends SUCCEEDED with its own result.
"""

from __future__ import annotations

import collections
import json
import time
from pathlib import Path

import pytest

from conveyor import Client, TaskState
from tests.apps.faults import expected
from tests.faults.test_faults import APP, calls, executions
from tests.harness import Cluster, wait_for

N = 6000
CYCLES = 20


def test_twenty_drains_under_load_run_nothing_twice(cluster: Cluster, redis_url: str, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    _, target = cluster.scheduler(redis_url)
    exec_dir = tmp_path / "exec"
    exec_dir.mkdir()
    started = time.monotonic()
    with Client(target, timeout=60) as client:
        ids = [h.id for h in client.submit_many(calls(exec_dir, range(N), seconds=0.005))]
        cluster.worker(target, APP, concurrency=2, name="steady")
        drained = 0
        for cycle in range(CYCLES):
            worker = cluster.worker(target, APP, concurrency=16, name=f"cycled{cycle}")
            log = exec_dir / f"exec-{worker.popen.pid}.log"
            wait_for(lambda log=log: log.exists() and log.read_text().count("\n") >= 30, 30,
                     what=f"cycle {cycle}: the worker to run some tasks")
            assert worker.terminate(30) == 0, worker.output()[-3000:]
            drained += log.read_text().count("\n")
        for n in range(2):
            cluster.worker(target, APP, concurrency=8, name=f"finisher{n}")
        results = client.results(ids, timeout=120)
        tasks = [client.get_task(i) for i in ids]
    runs = executions(exec_dir)
    twice = {i: n for i, n in runs.items() if n > 1}
    with capsys.disabled():
        print(f"\nfault drain: {CYCLES} SIGTERM/restart cycles, {drained} tasks run by the cycled worker, "
              f"{len(twice)} run twice, {time.monotonic() - started:.1f}s")
    assert [json.loads(json.dumps(r))["value"] for r in results] == [expected(i) for i in range(N)]
    assert collections.Counter(TaskState(t.state) for t in tasks) == {TaskState.SUCCEEDED: N}
    assert twice == {}, f"{len(twice)} finished tasks ran again after a drain"
    assert set(runs) == set(ids)  # every task ran, exactly once (a batch that reached a draining worker
    # is handed back unrun, so its task's next lease is attempt 2: that is not a second run)
