"""Results: waiting is a push that ends when the task ends; results expire after their TTL."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import pytest

from conveyor import AsyncClient, Client, NotFound, TaskFailed
from tests.harness import Cluster, wait_for


def test_wait_returns_when_the_task_completes(cluster: Cluster, scheduler: str, client: Client, tmp_path: Path) -> None:
    cluster.worker(scheduler)
    gate = tmp_path / "gate"
    handle = client.submit("t.wait_file", [str(gate), "done"])
    wait_for(lambda: handle.state.name == "ACTIVE", what="the task to start")
    opened_at: list[float] = []

    def open_gate() -> None:
        time.sleep(0.3)
        opened_at.append(time.monotonic())
        gate.touch()

    threading.Thread(target=open_gate).start()
    assert handle.result(timeout=60) == "done"
    # The waiter was woken by the completion, well before its 60 s wait could run out.
    assert time.monotonic() - opened_at[0] < 5


def test_failure_is_reported_with_its_error(cluster: Cluster, scheduler: str, client: Client) -> None:
    cluster.worker(scheduler)
    handle = client.submit("t.fail", ["bad input"])
    with pytest.raises(TaskFailed) as err:
        handle.result(timeout=30)
    assert (err.value.error_type, err.value.error_message, err.value.state) == ("ValueError", "bad input", "FAILED")
    assert "raise ValueError(message)" in err.value.traceback


def test_results_expire_after_their_ttl(cluster: Cluster, redis_url: str) -> None:
    _, target = cluster.scheduler(redis_url, "--result-ttl", "1")
    cluster.worker(target)
    with Client(target) as client:
        handle = client.submit("t.add", [20, 22])
        assert handle.result(timeout=30) == 42
        wait_for(lambda: _gone(client, handle.id), timeout=10, what="the result to expire")


def _gone(client: Client, task_id: str) -> bool:
    try:
        client.get_result(task_id)
    except NotFound:
        return True
    return False


def test_async_client_round_trip(cluster: Cluster, scheduler: str) -> None:
    cluster.worker(scheduler)

    async def main() -> None:
        async with AsyncClient(scheduler) as client:
            handle = await client.submit("t.echo", [{"nested": [1, 2, {"x": None}]}])
            assert await handle.result(timeout=30) == {"nested": [1, 2, {"x": None}]}
            assert (await handle.state()).name == "SUCCEEDED"

    asyncio.run(main())
