"""`conveyor queues`, `queue pause|resume|purge`, `tasks`, `retry`, bulk `cancel` and `top`, run as
a user would against a real scheduler (and worker): output shape, counts and exit codes. What
the server does with them (paging, rates, pause across replicas) is tested on the server side."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

from conveyor import Call, Client, SubmitOptions, TaskFailed
from tests.e2e.test_cli import conveyor
from tests.harness import Cluster, wait_for, worker_id


def cli_json(target: str, *args: str) -> Any:
    out = conveyor(target, *args, "--json")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def answering(target: str, stdin: str, *args: str) -> subprocess.CompletedProcess[str]:
    """`conveyor ARGS` with STDIN typed at its prompt."""
    return subprocess.run([sys.executable, "-m", "conveyor.cli", "--scheduler", target, *args], input=stdin,
                          capture_output=True, text=True, timeout=60, check=False)


def assert_unknown_queue(out: subprocess.CompletedProcess[str]) -> None:
    assert (out.returncode, out.stdout) == (2, ""), out.stderr
    assert out.stderr.startswith("error: NOT_FOUND: ") and "conveyor queues" in out.stderr


def test_queues_show_depth_and_pause_resume_purge_a_queue(client: Client, scheduler: str) -> None:
    client.submit_many([Call("t.add", [i, 1], options=SubmitOptions(queue="emails")) for i in range(3)])  # no worker
    client.submit("t.add", [0, 0], queue="emails", countdown=3600)
    [emails] = cli_json(scheduler, "queues", "--queue", "emails")["queues"]
    assert (emails["queue"], emails["queued"], emails["scheduled"], emails["active"], emails["paused"]) == (
        "emails", 3, 1, 0, False)
    assert emails["queued_by_priority"][0] == 3 and emails["oldest_queued_age"] >= 0
    assert sorted(emails["windows"]) == ["1", "15", "5"] and emails["windows"]["1"]["submitted"] == 4
    assert "emails" in [q["queue"] for q in cli_json(scheduler, "queues")["queues"]]

    assert cli_json(scheduler, "queue", "pause", "emails") == {"queue": "emails", "paused": True, "was_paused": False}
    assert conveyor(scheduler, "queue", "pause", "emails").stdout == "emails was already paused\n"
    human = conveyor(scheduler, "queues")
    row = next(line for line in human.stdout.splitlines() if "emails" in line).replace("│", " ").split()
    assert human.returncode == 0 and row[:6] == ["emails", "yes", "3", "1", "0", "0"], human.stdout
    assert "SUBMITTED/s" in human.stdout and "WAIT p95" in human.stdout
    assert conveyor(scheduler, "queue", "resume", "emails").stdout == "resumed emails\n"
    assert not cli_json(scheduler, "queue", "resume", "emails")["was_paused"]

    declined = answering(scheduler, "n\n", "queue", "purge", "emails")
    assert declined.returncode == 1 and "Cancel the 4 waiting tasks of emails (3 queued, 1 scheduled)?" in (
        declined.stderr), declined.stderr
    assert cli_json(scheduler, "queues", "--queue", "emails")["queues"][0]["queued"] == 3
    confirmed = answering(scheduler, "y\n", "queue", "purge", "emails")
    assert (confirmed.returncode, confirmed.stdout) == (0, "purged 4 tasks from emails\n"), confirmed.stderr
    client.submit("t.add", [1, 1], queue="emails")
    assert cli_json(scheduler, "queue", "purge", "emails", "--yes") == {"queue": "emails", "purged": 1}

    for args in (("queues", "--queue", "nope"), ("queue", "pause", "nope"), ("queue", "resume", "nope"),
                 ("queue", "purge", "nope", "--yes"), ("queue", "purge", "nope")):
        assert_unknown_queue(conveyor(scheduler, *args))


def test_tasks_retry_and_cancel_by_filter(cluster: Cluster, client: Client, scheduler: str) -> None:
    cluster.worker(scheduler)  # consumes "default" only: tasks sent to "idle" stay queued
    failed = [client.submit("t.fail", [f"no {i}"]) for i in range(3)]
    added = client.submit("t.add", [1, 2])
    for handle in failed:
        with pytest.raises(TaskFailed):
            handle.result(timeout=30)
    assert added.result(timeout=30) == 3

    found = cli_json(scheduler, "tasks", "--state", "failed", "--since", "1h")
    assert sorted(t["id"] for t in found["tasks"]) == sorted(h.id for h in failed) and not found["more"]
    assert found["filter"]["states"] == ["failed"] and found["filter"]["since"].endswith("Z")
    assert {(t["name"], t["state"], t["queue"]) for t in found["tasks"]} == {("t.fail", "TASK_STATE_FAILED",
                                                                              "default")}
    assert [t["id"] for t in cli_json(scheduler, "tasks", "--name", "t.add")["tasks"]] == [added.id]
    cut = cli_json(scheduler, "tasks", "--name-prefix", "t.", "--limit", "2")
    assert len(cut["tasks"]) == 2 and cut["more"]
    human = conveyor(scheduler, "tasks", "--queue", "default", "--state", "FAILED")
    assert human.returncode == 0 and all(h.id in human.stdout for h in failed) and "ValueError" in human.stdout
    for bad in (("--since", "5x"), ("--until", "yesterday"), ("--name", "a", "--name-prefix", "b")):
        usage = conveyor(scheduler, "tasks", *bad)
        assert usage.returncode == 2 and usage.stdout == "", bad
    assert_unknown_queue(conveyor(scheduler, "tasks", "--queue", "nope"))

    retry = ("retry", "--state", "failed", "--name", "t.fail", "--since", "1h")
    assert conveyor(scheduler, *retry, "--dry-run").stdout == "matched 3, would retry 3 (dry run: nothing changed)\n"
    dry = cli_json(scheduler, *retry, "--dry-run")
    assert (dry["dry_run"], dry["matched"], dry["retried"]) == (True, 3, 0)
    done = cli_json(scheduler, *retry)
    assert (done["dry_run"], done["matched"], done["retried"]) == (False, 3, 3)
    assert conveyor(scheduler, "retry", "--name", "t.fail").returncode == 2  # --state is required
    assert conveyor(scheduler, "retry", "--state", "queued").returncode == 2  # not a retryable state

    idle = [client.submit("t.add", [i, i], queue="idle") for i in range(4)]
    bulk = ("cancel", "--queue", "idle", "--state", "queued")
    assert conveyor(scheduler, *bulk, "--dry-run").stdout == "matched 4, would cancel 4 (dry run: nothing changed)\n"
    assert conveyor(scheduler, *bulk).stdout == "matched 4, cancelled 4, stopping 0\n"
    assert cli_json(scheduler, *bulk) == {"filter": {"queue": "idle", "states": ["queued"]}, "dry_run": False,
                                          "matched": 0, "cancelled": 0, "stopping": 0}
    listed = cli_json(scheduler, "tasks", "--queue", "idle")["tasks"]
    assert sorted(t["id"] for t in listed) == sorted(h.id for h in idle)
    assert {t["state"] for t in listed} == {"TASK_STATE_CANCELLED"}

    one = client.submit("t.add", [5, 5], queue="idle")
    assert conveyor(scheduler, "cancel", one.id).stdout == "CANCELLED\n"  # one task, as before
    for usage_args in (("cancel",), ("cancel", one.id, "--state", "queued"), ("cancel", "--queue", "idle"),
                       ("cancel", "--state", "failed")):
        assert conveyor(scheduler, *usage_args).returncode == 2, usage_args
    assert_unknown_queue(conveyor(scheduler, "cancel", "--queue", "nope", "--state", "queued"))


def test_top_once_renders_the_queues_and_workers_tables(cluster: Cluster, client: Client, scheduler: str) -> None:
    wid = worker_id(cluster.worker(scheduler))
    wait_for(lambda: [w.id for w in client.admin.list_workers()] == [wid], 20, what="the worker registered")
    assert client.submit("t.add", [2, 2]).result(timeout=30) == 4
    out = conveyor(scheduler, "top", "--once")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(f"conveyor top: {scheduler} at ")
    lines = out.stdout.splitlines()
    queues_at = next(i for i, line in enumerate(lines) if line.startswith("Queues"))
    workers_at = next(i for i, line in enumerate(lines) if line.startswith("Workers"))
    assert queues_at < workers_at
    assert any(line.replace("│", " ").split()[:1] == ["default"] for line in lines[queues_at:workers_at])
    assert any(wid in line for line in lines[workers_at:]) and "1 connected" in out.stdout
    assert "default" in conveyor(scheduler, "top", "--once", "--queue", "default").stdout
    assert_unknown_queue(conveyor(scheduler, "top", "--once", "--queue", "nope"))
    assert conveyor(scheduler, "top", "--interval", "0").returncode == 2
