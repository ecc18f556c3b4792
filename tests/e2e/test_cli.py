"""The `conveyor` command line against a real scheduler and worker."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.harness import Cluster


def conveyor(target: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "conveyor.cli", "--scheduler", target, *args],
                          capture_output=True, text=True, timeout=60, check=False)


def test_submit_wait_result_and_task(cluster: Cluster, scheduler: str) -> None:
    cluster.worker(scheduler)
    out = conveyor(scheduler, "submit", "t.add", "--args", "[20, 22]", "--priority", "3", "--wait")
    assert out.returncode == 0, out.stderr
    task_id, value = out.stdout.split()
    assert value == "42"
    assert conveyor(scheduler, "result", task_id).stdout.strip() == "42"
    record = json.loads(conveyor(scheduler, "task", task_id).stdout)
    assert (record["name"], record["state"], record["priority"], record["queue"]) == (
        "t.add", "TASK_STATE_SUCCEEDED", 3, "default")


def test_failures_and_bad_input_exit_non_zero(cluster: Cluster, scheduler: str) -> None:
    cluster.worker(scheduler)
    failed = conveyor(scheduler, "submit", "t.fail", "--args", '["nope"]', "--wait")
    assert failed.returncode == 1 and "ValueError: nope" in failed.stderr
    bad = conveyor(scheduler, "submit", "t.add", "--priority", "12")
    assert bad.returncode == 1 and "tasks[0].priority" in bad.stderr
    unknown = conveyor(scheduler, "result", "0" * 26)
    assert unknown.returncode == 1 and "error:" in unknown.stderr
