"""The `conveyor` command line against a real scheduler and worker."""

from __future__ import annotations

import base64
import json
import subprocess
import sys

import pytest

from conveyor import Call, Client, SubmitOptions, TaskFailed
from conveyor.v1 import task_pb2
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
    shown = conveyor(scheduler, "task", task_id, "--json")
    assert shown.returncode == 0, shown.stderr
    record = json.loads(shown.stdout)
    assert (record["name"], record["state"], record["priority"], record["queue"], record["attempt"]) == (
        "t.add", "TASK_STATE_SUCCEEDED", 3, "default", 1)
    assert (record["args"], record["kwargs"]) == ([20, 22], {}) and "payload" not in record
    assert record["result"] == {"content_type": "application/json", "value": 42}
    human = conveyor(scheduler, "task", task_id)
    assert human.returncode == 0, human.stderr
    rows = {line.split(None, 1)[0]: line.split(None, 1)[1].strip() for line in human.stdout.splitlines()
            if line.strip() and not line.startswith(" ")}
    assert (rows["id"], rows["state"], rows["result"], rows["attempt"]) == (task_id, "SUCCEEDED", "42",
                                                                           "1 (max retries 0)")
    assert rows["args"] == "[" and "  20," in human.stdout  # pretty-printed JSON, not base64
    assert base64.b64encode(b'{"args":[20,22]').decode()[:12] not in human.stdout + shown.stdout


def test_failures_and_bad_input_exit_non_zero(cluster: Cluster, scheduler: str) -> None:
    cluster.worker(scheduler)
    failed = conveyor(scheduler, "submit", "t.fail", "--args", '["nope"]', "--wait")
    assert failed.returncode == 1 and "ValueError: nope" in failed.stderr
    bad = conveyor(scheduler, "submit", "t.add", "--priority", "12")
    assert bad.returncode == 1 and "tasks[0].priority" in bad.stderr
    unknown = conveyor(scheduler, "result", "0" * 26)
    assert unknown.returncode == 1 and unknown.stderr.startswith("error: NOT_FOUND: ")
    missing = conveyor(scheduler, "task", "0" * 26, "--json")
    assert (missing.returncode, missing.stdout) == (1, "") and missing.stderr.startswith("error: NOT_FOUND: ")
    usage = conveyor(scheduler, "dead", "list", "--limit", "0")
    assert usage.returncode == 2 and "--limit" in usage.stderr
    help_text = conveyor(scheduler, "--help").stdout
    assert "Exit codes:" in help_text and "--json" in help_text


def test_task_shows_failures_and_other_content_types(cluster: Cluster, scheduler: str) -> None:
    cluster.worker(scheduler)
    with Client(scheduler) as client:
        dead = client.submit("t.fail", ["nope"], max_retries=1, retry_backoff=0)
        raw = client.submit_many([task_pb2.TaskSpec(name="t.nobody", payload=bytes(range(40)),
                                                    content_type="application/octet-stream")])[0]
        with pytest.raises(TaskFailed):
            dead.result(timeout=30)
    record = json.loads(conveyor(scheduler, "task", dead.id, "--json").stdout)
    assert (record["state"], record["attempt"], record["args"]) == ("TASK_STATE_DEAD", 2, ["nope"])
    assert record["error"]["type"] == "ValueError" and "raise ValueError" in record["error"]["traceback"]
    assert [a["attempt"] for a in record["attempts"]] == [1, 2]  # both failed attempts, oldest first
    assert all(a["error"]["type"] == "ValueError" and a["worker_id"] for a in record["attempts"])
    human = conveyor(scheduler, "task", dead.id).stdout
    assert "ValueError: nope" in human and "traceback" in human and "raise ValueError(message)" in human
    assert "earlier attempts" in human
    other = json.loads(conveyor(scheduler, "task", raw.id, "--json").stdout)
    assert other["payload"] == {"content_type": "application/octet-stream", "size": 40,
                                "hex": bytes(range(32)).hex()}
    assert "args" not in other
    shown = f"application/octet-stream, 40 bytes: {bytes(range(32)).hex()}..."
    assert shown in conveyor(scheduler, "task", raw.id).stdout


def test_dead_letters(cluster: Cluster, scheduler: str) -> None:
    cluster.worker(scheduler)
    with Client(scheduler) as client:
        handles = client.submit_many([Call("t.fail", [f"n{i}"], {}, SubmitOptions(max_retries=1, retry_backoff=0))
                                      for i in range(3)])
        for h in handles:
            with pytest.raises(TaskFailed):
                h.result(timeout=30)
    listed = conveyor(scheduler, "dead", "list", "default", "--json")
    assert listed.returncode == 0, listed.stderr
    doc = json.loads(listed.stdout)
    assert (doc["queue"], doc["total"]) == ("default", 3)
    assert {t["id"] for t in doc["tasks"]} == {h.id for h in handles}
    assert {(t["args"][0], t["error"]["type"]) for t in doc["tasks"]} == {("n0", "ValueError"), ("n1", "ValueError"),
                                                                         ("n2", "ValueError")}
    table = conveyor(scheduler, "dead", "list", "default", "--limit", "2")
    assert table.returncode == 0, table.stderr
    assert [h.id in table.stdout for h in handles].count(True) == 2 and "1-2 of 3" in table.stdout
    first = doc["tasks"][0]["id"]
    requeued = conveyor(scheduler, "dead", "requeue", "default", first, "--json")
    assert json.loads(requeued.stdout) == {"queue": "default", "requeued": 1}
    no_ids = conveyor(scheduler, "dead", "purge", "default")
    assert no_ids.returncode == 2 and "--all" in no_ids.stderr
    purged = conveyor(scheduler, "dead", "purge", "default", "--all", "--json")
    assert json.loads(purged.stdout)["purged"] >= 2  # the requeued one may be dead again already
