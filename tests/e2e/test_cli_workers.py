"""`conveyor workers` / `conveyor worker ...` and `client.admin`'s worker calls, against a real
scheduler and two real worker processes."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from conveyor import AsyncClient, Client, WorkerInfo
from tests.e2e.test_cli import conveyor
from tests.harness import Cluster, wait_for, worker_id

FAST = ("--lease-ttl", "2", "--heartbeat-interval", "0.5")
"""Heartbeats every 0.5 s, so a new concurrency shows in the registry within a second."""


def cli_json(target: str, *args: str) -> Any:
    out = conveyor(target, *args, "--json")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def listed(target: str) -> dict[str, dict[str, Any]]:
    return {w["id"]: w for w in cli_json(target, "workers")["workers"]}


def test_cli_lists_scales_drains_and_shuts_down_workers(cluster: Cluster, redis_url: str) -> None:
    _, target = cluster.scheduler(redis_url, *FAST)
    one = cluster.worker(target, queues="default", concurrency=2, name="one")
    two = cluster.worker(target, queues="default,emails", concurrency=3, name="two")
    a, b = worker_id(one), worker_id(two)
    wait_for(lambda: {a, b} <= set(listed(target)), 20, what="both workers registered")
    found = listed(target)
    assert (found[a]["queues"], found[a]["concurrency"], found[a]["pid"]) == (["default"], 2, one.popen.pid)
    assert (found[b]["queues"], found[b]["concurrency"]) == (["default", "emails"], 3)
    assert not found[a]["draining"] and found[a]["in_flight"] == 0 and found[a]["last_heartbeat"].endswith("Z")
    assert [w["id"] for w in cli_json(target, "workers", "--queue", "emails")["workers"]] == [b]
    human = conveyor(target, "workers")
    assert human.returncode == 0 and a in human.stdout and b in human.stdout and "0/2" in human.stdout

    scaled = conveyor(target, "worker", "scale", a, "5")
    assert scaled.returncode == 0, scaled.stderr
    wait_for(lambda: cli_json(target, "worker", "show", a)["concurrency"] == 5, 10, what="the registry to show 5")

    drained = conveyor(target, "worker", "drain", a, "--reason", "test")
    assert drained.returncode == 0, drained.stderr
    wait_for(lambda: cli_json(target, "worker", "show", a)["draining"], 10, what="the worker to drain")
    assert one.alive() and "draining" in conveyor(target, "worker", "show", a).stdout

    left = conveyor(target, "worker", "shutdown", b)
    assert left.returncode == 0, left.stderr
    assert two.popen.wait(20) == 0
    wait_for(lambda: b not in listed(target), 10, what="the worker to leave the registry")

    for args in (("worker", "show", "nobody"), ("worker", "drain", "nobody"), ("worker", "shutdown", "nobody"),
                 ("worker", "scale", "nobody", "2")):
        missing = conveyor(target, *args)
        assert (missing.returncode, missing.stdout) == (1, ""), args
        assert missing.stderr.startswith("error: NOT_FOUND: worker_id: ") and "'nobody'" in missing.stderr
    usage = conveyor(target, "worker", "scale", a, "0")
    assert usage.returncode == 2 and "CONCURRENCY" in usage.stderr


def test_both_clients_list_the_same_workers(cluster: Cluster, redis_url: str) -> None:
    _, target = cluster.scheduler(redis_url)
    ids = {worker_id(cluster.worker(target, queues=q, name=q)) for q in ("default", "emails")}

    async def async_list() -> list[WorkerInfo]:
        async with AsyncClient(target) as aclient:
            return await aclient.admin.list_workers()

    with Client(target) as client:
        wait_for(lambda: {w.id for w in client.admin.list_workers()} == ids, 20, what="both workers registered")

        def same() -> list[WorkerInfo] | None:
            """Both lists when equal (a heartbeat landing between the two calls changes last_heartbeat)."""
            sync = client.admin.list_workers()
            return sync if sync == asyncio.run(async_list()) else None

        workers = wait_for(same, 10, what="the same list from both clients")
        assert workers and [w.id for w in workers] == sorted(ids) and all(isinstance(w, WorkerInfo) for w in workers)
        emails = client.admin.get_worker(workers[1].id)
        assert (emails.queues, emails.concurrency, emails.draining, emails.in_flight) == (("emails",), 4, False, 0)
        assert emails.connected_at <= emails.last_heartbeat < emails.expires_at and emails.started_at is not None
        assert [w.id for w in client.admin.list_workers("emails")] == [emails.id]
