"""The dashboard over HTTP (Starlette's TestClient) against a real scheduler, Redis and worker:
every page answers with data, CSRF and roles are enforced on actions, the task list's cursor
walks a whole search, a task's SSE stream follows it to the end; the real command serves; and
against a mutual-TLS scheduler every channel (the dashboard's and each session's) presents the
client certificate."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx2 as httpx
import pytest
from starlette.testclient import TestClient

from conveyor import Client
from conveyor.aio import AsyncClient
from conveyor.channels import TLSConfig
from conveyor.common import TaskState
from conveyor.v1 import task_pb2
from conveyor_dashboard.app import create_app
from conveyor_dashboard.events import OverviewHub
from conveyor_dashboard.settings import Settings
from tests.auth_calls import auth_file
from tests.harness import ROOT, Cluster, free_port, serving, wait_for
from tests.tls_files import Authority, Pair

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
ADMIN, READER = "admin-secret-0123456789", "reader-secret-0123456789"


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html) or re.search(r'name="csrf-token" content="([^"]+)"', html)
    assert found, html[:2000]
    return found.group(1)


def state_of(client: Client, task_id: str) -> TaskState:
    return TaskState(client.get_task(task_id).state)


def finished(client: Client, task_id: str) -> TaskState:
    def done() -> TaskState | None:
        state = state_of(client, task_id)
        return state if state.terminal else None

    return wait_for(done, what=f"{task_id} to finish")


@pytest.fixture
def web(scheduler: str) -> Iterator[TestClient]:
    with TestClient(create_app(Settings(scheduler=scheduler, trace_url="http://jaeger/trace/{trace_id}")),
                    follow_redirects=False) as c:
        yield c


def test_every_page_answers_with_data(cluster: Cluster, scheduler: str, client: Client, web: TestClient) -> None:
    worker = cluster.worker(scheduler)
    ok = client.submit("t.add", [2, 3], headers={"traceparent": TRACEPARENT})
    bad = client.submit("t.fail", ["kaboom"], max_retries=2, retry_backoff=0)  # three failed attempts, then DEAD
    [binary] = client.submit_many([task_pb2.TaskSpec(name="t.nobody", queue="other", payload=b"\x00\x01\xfe",
                                                     content_type="application/octet-stream")])
    client.schedules.create("every-hour", "t.add", [1, 1], every=3600)
    assert finished(client, ok.id) is TaskState.SUCCEEDED and finished(client, bad.id).name in ("FAILED", "DEAD")
    wait_for(client.admin.list_workers, what="the worker in the registry")

    pages = {path: web.get(path) for path in ("/", "/queues", "/tasks", f"/tasks/{ok.id}", f"/tasks/{bad.id}",
                                              f"/tasks/{binary.id}", "/dead?queue=default", "/workers", "/schedules")}
    assert {path: r.status_code for path, r in pages.items() if r.status_code != 200} == {}
    assert '<tr data-queue="default">' in pages["/"].text and "workers online" in pages["/"].text
    queues = pages["/queues"].text
    assert '<tr data-queue="default">' in queues and '<tr data-queue="other">' in queues
    assert re.search(r'<tr data-queue="other">.*?data-testid="queued">1<', queues, re.S)
    assert all(f'data-task-id="{t}"' in pages["/tasks"].text for t in (ok.id, bad.id, binary.id))
    done = pages[f"/tasks/{ok.id}"].text
    assert re.search(r'data-testid="task-state"[^>]*>SUCCEEDED<', done)
    assert re.search(r'data-testid="task-result"[^>]*>5</pre>', done)
    assert re.search(r'data-testid="task-args"[^>]*>\[\s*2,\s*3\s*\]</pre>', done)
    assert 'href="http://jaeger/trace/4bf92f3577b34da6a3ce929d0e0e4736"' in done and "traceparent" in done
    failed = pages[f"/tasks/{bad.id}"].text
    assert failed.count('data-testid="traceback"') == 3 and "kaboom" in failed  # one per failed attempt
    assert all(f'<tr data-attempt="{n}">' in failed for n in (1, 2, 3))
    assert re.search(r'data-testid="task-args"[^>]*>\[\s*&#34;kaboom&#34;\s*\]</pre>', failed), failed
    assert "3 bytes: 00 01 fe" in pages[f"/tasks/{binary.id}"].text
    assert worker.popen.args[-1] in pages["/workers"].text or "worker-" in pages["/workers"].text
    assert "every-hour" in pages["/schedules"].text and "every 60.0 min" in pages["/schedules"].text
    assert 'data-action="pause"' in queues  # no auth: everything is offered
    filtered = web.get("/tasks", params={"queue": "default", "state": "SUCCEEDED"}).text
    assert f'data-task-id="{ok.id}"' in filtered and f'data-task-id="{bad.id}"' not in filtered
    assert web.get("/static/vendor/htmx.min.js").status_code == 200
    assert web.get("/static/vendor/uPlot.iife.min.js").status_code == 200
    assert web.get("/tasks", params={"state": "nonsense"}).status_code == 400


def test_the_overview_chart_holds_the_hour_the_scheduler_kept(cluster: Cluster, scheduler: str,
                                                               client: Client) -> None:
    """The chart's points come from GetQueueHistory, so a dashboard started after the work was
    done (or restarted) still draws it; each push carries the last two minutes."""
    cluster.worker(scheduler)
    ok = [client.submit("t.add", [i, i], queue="default") for i in range(20)]
    bad = [client.submit("t.fail", ["no"], queue="default") for _ in range(3)]
    assert all(finished(client, h.id) is TaskState.SUCCEEDED for h in ok)
    assert all(finished(client, h.id) is TaskState.FAILED for h in bad)
    with TestClient(create_app(Settings(scheduler=scheduler))) as fresh:
        html = fresh.get("/").text
        found = re.search(r"data-history='([^']*)'", html)
        assert found, html[:2000]
        points = json.loads(found.group(1).replace("&#34;", '"'))
        with fresh.stream("GET", "/events/overview") as r:
            data = next(line for line in r.iter_lines() if line.startswith("data:"))
    assert len(points) == 60
    starts = [p[0] for p in points]
    assert starts == sorted(starts) and all(b - a == 60 for a, b in itertools.pairwise(starts))
    # Rates per second of each minute's coverage: times the coverage, they add up to the tasks.
    history = client.admin.queue_history(minutes=60)
    covered = [w.covered for w in history.total]
    assert round(sum(p[1] * c for p, c in zip(points, covered, strict=True))) >= len(ok) + len(bad)
    assert round(sum(p[2] * c for p, c in zip(points, covered, strict=True))) >= len(bad)
    assert any(p[3] is not None for p in points)  # a p95 wait where tasks started
    recent = json.loads(data[5:])["recent"]
    assert len(recent) == 2 and [p[0] for p in recent] == starts[-2:]


def test_a_post_without_the_csrf_token_is_refused(client: Client, web: TestClient) -> None:
    client.submit("t.add", [1, 1], queue="q1")
    token = csrf_of(web.get("/queues").text)
    assert web.post("/queues/q1/pause").status_code == 403
    assert web.post("/queues/q1/pause", data={"csrf": "forged"}).status_code == 403
    assert not client.admin.queues("q1")[0].paused
    r = web.post("/queues/q1/pause", data={"csrf": token, "next": "/queues"})
    assert (r.status_code, r.headers["location"]) == (303, "/queues")
    assert client.admin.queues("q1")[0].paused
    assert web.post("/queues/q1/resume", headers={"X-CSRF-Token": token}).status_code == 303  # as htmx sends it
    assert not client.admin.queues("q1")[0].paused
    assert "resumed queue q1" in web.get("/queues").text  # the flash message


def test_the_task_list_cursor_walks_the_whole_search(client: Client, web: TestClient) -> None:
    handles = client.submit_many([task_pb2.TaskSpec(name="t.add", queue="bulk", payload=b'{"args":[1,2]}')
                                  for _ in range(120)])
    url, seen, pages = "/tasks?queue=bulk", [], 0
    while url:
        html = web.get(url).text
        rows = re.findall(r'<tr data-task-id="([^"]+)"', html)
        assert len(rows) <= 50
        seen += rows
        pages += 1
        nxt = re.search(r'<a href="([^"]+)" data-testid="next-page"', html)
        url = nxt.group(1).replace("&amp;", "&") if nxt else ""
        assert pages < 10
    assert pages >= 3 and len(seen) == len(set(seen)) == 120 and set(seen) == {h.id for h in handles}


def test_the_task_stream_follows_a_task_to_its_end(cluster: Cluster, scheduler: str, client: Client,
                                                   web: TestClient) -> None:
    cluster.worker(scheduler)
    handle = client.submit("t.sleep", [0.5, "slept"])
    page = web.get(f"/tasks/{handle.id}").text
    assert f'data-sse="/events/tasks/{handle.id}"' in page
    with web.stream("GET", f"/events/tasks/{handle.id}") as r:  # ends by itself once the task has finished
        events = [json.loads(line[5:]) for line in r.iter_lines() if line.startswith("data:")]
    assert events[-1]["state"] == "SUCCEEDED" and events[-1]["terminal"]
    assert 'data-sse="/events/tasks/' not in web.get(f"/tasks/{handle.id}").text  # finished: nothing to follow


@pytest.fixture
def secured(cluster: Cluster, redis_url: str, tmp_path: Path) -> str:
    path = auth_file(tmp_path / "tokens.toml", {ADMIN: ("ops", ["admin"], None), READER: ("viewer", ["reader"], None)})
    return cluster.scheduler(redis_url, "--auth-file", str(path))[1]


def test_roles_decide_what_is_offered_and_a_readers_forged_post_changes_nothing(secured: str) -> None:
    admin = Client(secured, token=ADMIN)
    task = admin.submit("t.add", [1, 2], queue="q2")
    settings = Settings(scheduler=secured)  # one app per client: each TestClient runs its own event loop
    with TestClient(create_app(settings), follow_redirects=False) as reader, \
            TestClient(create_app(settings), follow_redirects=False) as ops:
        first = reader.get("/queues")
        assert first.status_code == 303 and first.headers["location"].startswith("/signin")
        assert '<input name="token"' in reader.get("/signin").text
        assert reader.post("/signin", data={"token": "wrong-token-0123456789"}).status_code == 401
        r = reader.post("/signin", data={"token": READER, "next": "/queues"})
        assert (r.status_code, r.headers["location"]) == (303, "/queues")
        cookie = r.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie and READER.lower() not in cookie
        page = reader.get("/queues").text
        assert '<tr data-queue="q2">' in page and "data-action" not in page and "viewer (reader)" in page
        assert "data-action" not in reader.get(f"/tasks/{task.id}").text
        token = csrf_of(page)
        assert reader.post("/queues/q2/pause", data={"csrf": token}).status_code == 403
        assert reader.post(f"/tasks/{task.id}/cancel", data={"csrf": token}).status_code == 403
        assert not admin.admin.queues("q2")[0].paused and state_of(admin, task.id) is TaskState.QUEUED

        assert ops.post("/signin", data={"token": ADMIN}).status_code == 303
        page = ops.get("/queues").text
        assert 'data-action="pause"' in page and 'data-action="purge"' in page
        assert ops.post("/queues/q2/pause", data={"csrf": csrf_of(page)}).status_code == 303
        assert admin.admin.queues("q2")[0].paused
        purge = ops.post("/queues/q2/purge", data={"csrf": csrf_of(page), "confirm": "7"})  # not the count shown
        assert purge.status_code == 303 and state_of(admin, task.id) is TaskState.QUEUED
        assert ops.post("/queues/q2/purge", data={"csrf": csrf_of(page), "confirm": "1"}).status_code == 303
        assert state_of(admin, task.id) is TaskState.CANCELLED
        assert ops.post("/signout", data={"csrf": csrf_of(page)}).status_code == 303
        assert ops.get("/queues").status_code == 303  # signed out: back to the sign-in page
    admin.close()


def test_read_only_hides_and_refuses_every_action(scheduler: str, client: Client) -> None:
    client.submit("t.add", [1, 1], queue="q3")
    with TestClient(create_app(Settings(scheduler=scheduler, read_only=True)), follow_redirects=False) as web:
        page = web.get("/queues").text
        assert '<tr data-queue="q3">' in page and "data-action" not in page
        assert web.post("/queues/q3/pause", data={"csrf": csrf_of(page)}).status_code == 403
    assert not client.admin.queues("q3")[0].paused


def test_the_command_serves_and_pushes_the_overview(cluster: Cluster, scheduler: str, client: Client) -> None:
    client.submit("t.add", [1, 1], queue="q4")
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "conveyor_dashboard", "--scheduler", scheduler, "--port",
                             str(port)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == f"conveyor-dashboard listening on http://127.0.0.1:{port}"
        base = f"http://127.0.0.1:{port}"
        assert '<tr data-queue="q4">' in httpx.get(f"{base}/").text
        with httpx.stream("GET", f"{base}/events/overview", timeout=30) as r:
            assert r.headers["content-type"].startswith("text/event-stream")
            data = next(line for line in r.iter_lines() if line.startswith("data:"))
        snap = json.loads(data[5:])
        assert [q["queue"] for q in snap["backlog"]] == ["q4"]
        assert [w["minutes"] for w in snap["windows"]] == [1, 5, 15]
    finally:
        proc.terminate()
        proc.wait(15)
        if proc.stdout is not None:
            proc.stdout.close()
    refused = subprocess.run([sys.executable, "-m", "conveyor_dashboard", "--scheduler", scheduler, "--host",
                              "0.0.0.0", "--port", str(free_port())],
                             capture_output=True, text=True, timeout=60, check=False)
    assert refused.returncode != 0 and "refusing to serve plain HTTP" in refused.stderr


def test_many_open_overviews_share_one_poll(scheduler: str, client: Client) -> None:
    client.submit("t.add", [1, 1], queue="q5")

    async def run() -> tuple[int, list[int]]:
        hub = OverviewHub(interval_s=0.1)
        async with AsyncClient(scheduler) as shared:
            async def listener() -> int:
                got = 0
                async for snap in hub.listen("dashboard", shared):
                    assert snap["backlog"][0]["queue"] == "q5"
                    got += 1
                    if got == 3:
                        return got
                return got

            counts = await asyncio.gather(*(listener() for _ in range(50)))
            polls = hub.polls_made
            await hub.close()
        return polls, counts

    polls, counts = asyncio.run(run())
    assert counts == [3] * 50
    assert polls <= 6, f"{polls} polls for 50 listeners of 3 snapshots each: the poll is not shared"


def test_cancel_and_retry_from_a_task_page(cluster: Cluster, scheduler: str, client: Client, web: TestClient) -> None:
    waiting = client.submit("t.add", [1, 1], queue="nobody-runs-this")
    token = csrf_of(web.get(f"/tasks/{waiting.id}").text)
    assert web.post(f"/tasks/{waiting.id}/cancel", data={"csrf": token}).status_code == 303
    assert state_of(client, waiting.id) is TaskState.CANCELLED
    cluster.worker(scheduler)
    bad = client.submit("t.fail", ["again"], max_retries=0)
    first = finished(client, bad.id)
    assert 'data-action="retry"' in web.get(f"/tasks/{bad.id}").text
    r = web.post(f"/tasks/{bad.id}/retry", data={"csrf": token})
    assert (r.status_code, r.headers["location"]) == (303, f"/tasks/{bad.id}")
    flash = web.get(f"/tasks/{bad.id}").text
    assert "queued again" in flash or "requeued" in flash, re.findall(r'class="flash[^>]*>[^<]*', flash)
    assert finished(client, bad.id) is first and client.get_task(bad.id).attempt == 1


@dataclass(frozen=True)
class MutualTLS:
    target: str
    ca: Path
    client: Pair
    """The client certificate every caller must present."""


@pytest.fixture
def mutual(cluster: Cluster, redis_url: str, tmp_path: Path) -> MutualTLS:
    """A scheduler that requires a client certificate from every connection, and a token per call."""
    authority = Authority(tmp_path / "pki")
    server, client = authority.issue("server"), authority.issue("dashboard-client", common_name="dashboard")
    path = auth_file(tmp_path / "tokens.toml", {ADMIN: ("ops", ["admin"], None), READER: ("viewer", ["reader"], None)})
    _, target = cluster.scheduler(redis_url, "--tls-cert", str(server.cert), "--tls-key", str(server.key),
                                  "--tls-client-ca", str(authority.pem), "--auth-file", str(path),
                                  tls=authority.client(client))
    assert not serving(target, authority.client())  # the handshake needs a client certificate
    return MutualTLS(target, authority.pem, client)


def _without_conveyor_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}


def test_the_command_reaches_a_mutual_tls_scheduler_on_every_channel(mutual: MutualTLS) -> None:
    """--scheduler-tls-* give the dashboard's own channel and each signed-in session's the client
    certificate; --tls-cert/--tls-key stay the dashboard's HTTPS pair (not used here)."""
    with Client(mutual.target, tls=TLSConfig(mutual.ca, mutual.client.cert, mutual.client.key), token=ADMIN) as c:
        c.submit("t.add", [1, 1], queue="mq")
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "conveyor_dashboard", "--scheduler", mutual.target, "--port",
                             str(port), "--token-free-read-only", "--scheduler-tls-ca", str(mutual.ca),
                             "--scheduler-tls-cert", str(mutual.client.cert), "--scheduler-tls-key",
                             str(mutual.client.key)],
                            stdout=subprocess.PIPE, text=True,
                            env={**_without_conveyor_env(), "CONVEYOR_TOKEN": READER, "PYTHONPATH": str(ROOT)})
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == f"conveyor-dashboard listening on http://127.0.0.1:{port}"
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as web:
            guest = web.get("/queues")  # the dashboard's own channel (its reader token)
            assert guest.status_code == 200 and '<tr data-queue="mq">' in guest.text
            assert "data-action" not in guest.text
            signed = web.post("/signin", data={"token": ADMIN, "next": "/queues"})
            assert signed.status_code == 303, signed.text
            page = web.get("/queues").text  # the session's own channel, with the admin token
            assert "ops (admin)" in page and '<tr data-queue="mq">' in page and 'data-action="pause"' in page
            assert web.post("/queues/mq/pause", data={"csrf": csrf_of(page)}).status_code == 303
    finally:
        proc.terminate()
        proc.wait(15)
        if proc.stdout is not None:
            proc.stdout.close()
    with Client(mutual.target, tls=TLSConfig(mutual.ca, mutual.client.cert, mutual.client.key), token=ADMIN) as c:
        assert c.admin.queues("mq")[0].paused  # the signed-in session's call reached the scheduler


def test_signed_in_sessions_use_the_conveyor_tls_variables(mutual: MutualTLS,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """With Settings.tls unset, CONVEYOR_TLS_* secure the dashboard's own channel and every session's alike."""
    monkeypatch.setenv("CONVEYOR_TLS_CA", str(mutual.ca))
    monkeypatch.setenv("CONVEYOR_TLS_CERT", str(mutual.client.cert))
    monkeypatch.setenv("CONVEYOR_TLS_KEY", str(mutual.client.key))
    monkeypatch.delenv("CONVEYOR_TOKEN", raising=False)
    with Client(mutual.target, token=ADMIN) as c:
        c.submit("t.add", [1, 1], queue="envq")
    with TestClient(create_app(Settings(scheduler=mutual.target)), follow_redirects=False) as web:
        assert web.get("/queues").headers["location"].startswith("/signin")  # asked the scheduler: auth is on
        signed = web.post("/signin", data={"token": READER, "next": "/queues"})
        assert signed.status_code == 303, signed.text
        page = web.get("/queues").text
        assert "viewer (reader)" in page and '<tr data-queue="envq">' in page
