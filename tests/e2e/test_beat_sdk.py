"""Beat from the outside: declared schedules applied by workers on start-up (idempotently),
and the `conveyor schedules` command line."""

from __future__ import annotations

import json
import subprocess
import sys

from conveyor import Client
from conveyor.v1 import schedule_service_pb2 as pb
from tests.apps.periodic import app
from tests.harness import Cluster, wait_for


def test_workers_apply_the_apps_schedules_idempotently(cluster: Cluster, scheduler: str, client: Client) -> None:
    first = cluster.worker(scheduler, "tests.apps.periodic:app", name="first")
    wait_for(lambda: len(client.schedules.list()) == 3, 30, what="the app's three schedules")
    stored = {s.id: s for s in client.schedules.list()}
    assert set(stored) == {"app.tick", "app.weekly", "tests.apps.periodic.nightly"}
    nightly = stored["tests.apps.periodic.nightly"]
    assert (nightly.cron.expression, nightly.cron.time_zone, nightly.template.name) == (
        "0 3 * * *", "Europe/Berlin", "tests.apps.periodic.nightly")
    assert stored["app.weekly"].template.priority == 5 and stored["app.tick"].catchup == pb.CATCHUP_POLICY_SKIP
    # the worker runs what the schedule submits
    wait_for(lambda: client.schedules.get("app.tick").fire_count >= 2, 15, what="app.tick firing")
    assert client.handle(client.schedules.get("app.tick").last_task_id).result(timeout=30) == "tock"
    # a second worker (and a restart) applies the same definitions: nothing changes
    second = cluster.worker(scheduler, "tests.apps.periodic:app", name="second")
    wait_for(lambda: second.output().count("applied") >= 3, 30, what="the second worker to apply its schedules")
    assert {s.id: s.update_time for s in client.schedules.list()} == {i: s.update_time for i, s in stored.items()}
    assert first.output().count("applied") == 3
    # a changed definition is an update: the app's version wins
    client.schedules.update("app.weekly", "p.tick", ["changed"], every=3600)
    assert len(app.apply_schedules(client)) == 3
    assert client.schedules.get("app.weekly").HasField("cron")


def conveyor(target: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "conveyor.cli", "--scheduler", target, "schedules", *args],
                          capture_output=True, text=True, timeout=60, check=False)


def test_schedules_cli(scheduler: str, client: Client) -> None:
    added = conveyor(scheduler, "add", "report", "t.add", "--cron", "*/5 * * * *", "--tz", "Europe/Berlin",
                     "--args", "[1, 2]", "--catchup", "skip")
    assert added.returncode == 0, added.stderr
    assert added.stdout.startswith("report  active  cron '*/5 * * * *' Europe/Berlin  next 20")
    assert conveyor(scheduler, "add", "fast", "t.add", "--every", "0.5").returncode == 0
    listed = conveyor(scheduler, "list", "--json")
    assert listed.returncode == 0, listed.stderr
    doc = json.loads(listed.stdout)
    assert [s["id"] for s in doc["schedules"]] == ["fast", "report"] and "beat_leader" in doc
    assert doc["schedules"][1]["cron"] == {"expression": "*/5 * * * *", "time_zone": "Europe/Berlin"}
    table = conveyor(scheduler, "list")
    assert table.returncode == 0, table.stderr
    rows = [line.split()[1] for line in table.stdout.splitlines() if line.split()[1:2] in (["fast"], ["report"])]
    assert rows == ["fast", "report"] and "2 schedule(s); beat leader: " in table.stdout
    assert conveyor(scheduler, "add", "neither", "t.add").returncode == 2  # usage: no --every or --cron
    assert "paused" in conveyor(scheduler, "pause", "report").stdout
    assert client.schedules.get("report").state == pb.SCHEDULE_STATE_PAUSED
    assert "active" in conveyor(scheduler, "resume", "report").stdout
    assert '"catchup": "CATCHUP_POLICY_SKIP"' in conveyor(scheduler, "show", "report").stdout
    again = conveyor(scheduler, "add", "report", "t.add", "--every", "60")
    assert again.returncode == 1 and "already exists" in again.stderr
    assert conveyor(scheduler, "add", "report", "t.add", "--every", "60", "--replace").returncode == 0
    assert client.schedules.get("report").HasField("interval")
    bad = conveyor(scheduler, "add", "broken", "t.add", "--cron", "* * *")
    assert bad.returncode == 1 and "schedule.cron.expression" in bad.stderr
    unknown_tz = conveyor(scheduler, "add", "broken", "t.add", "--cron", "* * * * *", "--tz", "Moon/Base")
    assert unknown_tz.returncode == 1 and "schedule.cron.time_zone" in unknown_tz.stderr
    fired = conveyor(scheduler, "fire", "report")
    assert fired.returncode == 0 and client.get_task(fired.stdout.strip()).headers["conveyor-schedule-id"] == "report"
    assert conveyor(scheduler, "rm", "report").stdout.strip() == "deleted report"
    gone = conveyor(scheduler, "rm", "report")
    assert gone.returncode == 1 and gone.stderr.startswith("error: NOT_FOUND: no schedule 'report'")
    assert [s.id for s in client.schedules.list()] == ["fast"]
