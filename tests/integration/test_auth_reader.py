"""A `reader` token reads results the SDK's default way (the TaskService.Pipeline stream), with the
sync and async clients and `conveyor result`, while a submit on that stream is refused per
message; a producer's stream is unchanged. Real scheduler, worker and Redis processes."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conveyor import AsyncClient, Client, TaskFailed, TaskState
from conveyor.errors import PermissionDenied
from tests.auth_calls import auth_file
from tests.harness import ROOT, Cluster

PRODUCER, READER, WORKER = "producer-secret-0123456789", "reader-secret-0123456789", "worker-secret-0123456789"
REFUSED = ("conveyor.v1.TaskService/Pipeline: a submit message needs role producer or worker or admin; "
           "token 'viewer' (reader)")


@pytest.fixture
def secured(cluster: Cluster, redis_url: str, tmp_path: Path) -> str:
    """A scheduler with an auth file, and a worker that runs tests.apps.basic with its own token."""
    path = auth_file(tmp_path / "tokens.toml", {PRODUCER: ("web", ["producer"], None),
                                                READER: ("viewer", ["reader"], None),
                                                WORKER: ("runner", ["worker"], None)})
    _, target = cluster.scheduler(redis_url, "--auth-file", str(path))
    cluster.worker(target, "tests.apps.basic:app", "--token", WORKER)
    return target


def test_a_reader_reads_results_with_the_default_client(secured: str) -> None:
    with Client(secured, token=PRODUCER) as producer:
        ok = producer.submit("t.add", [2, 3])  # the producer's own stream, as before
        bad = producer.submit("t.fail", ["nope"])
        assert ok.result(timeout=30) == 5
    with Client(secured, token=READER) as reader:
        assert reader._pipeline is not None  # the default path: results over the Pipeline stream
        assert reader.handle(ok.id).result(timeout=30) == 5
        assert reader.get_result(ok.id, wait=10).state == TaskState.SUCCEEDED
        assert reader.results([ok.id], timeout=30) == [5]
        with pytest.raises(TaskFailed, match="nope"):
            reader.handle(bad.id).result(timeout=30)


def test_a_readers_submit_on_the_stream_is_refused_and_its_reads_go_on(secured: str) -> None:
    with Client(secured, token=PRODUCER) as producer:
        done = producer.submit("t.add", [1, 1])
        assert done.result(timeout=30) == 2
    with Client(secured, token=READER) as reader:
        assert reader.handle(done.id).result(timeout=30) == 2
        with pytest.raises(PermissionDenied) as err:
            reader.submit("t.add", [4, 4])
        assert REFUSED in str(err.value) and READER not in str(err.value)
        assert reader.get_result(done.id).state == TaskState.SUCCEEDED  # a new stream: reads still pass
    with Client(secured, token=PRODUCER) as producer:  # nothing was stored for the refused submit
        assert producer.get_task(done.id).name == "t.add"


def test_a_reader_reads_results_with_the_async_client(secured: str) -> None:
    async def run() -> None:
        async with AsyncClient(secured, token=PRODUCER) as producer:
            handle = await producer.submit("t.add", [20, 22])
        async with AsyncClient(secured, token=READER) as reader:
            assert reader._pipeline is not None
            assert await reader.handle(handle.id).result(timeout=30) == 42
            assert (await reader.get_result(handle.id, wait=10)).state == TaskState.SUCCEEDED
            assert await reader.results([handle.id], timeout=30) == [42]
            with pytest.raises(PermissionDenied) as err:
                await reader.submit("t.add", [1, 2])
            assert REFUSED in str(err.value)

    asyncio.run(run())


def test_conveyor_result_with_a_reader_token(secured: str) -> None:
    with Client(secured, token=PRODUCER) as producer:
        handle = producer.submit("t.add", [40, 2])
        assert handle.result(timeout=30) == 42
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
    env.update({"PYTHONPATH": str(ROOT), "CONVEYOR_TOKEN": READER})
    out = subprocess.run([sys.executable, "-m", "conveyor.cli", "--scheduler", secured, "result", handle.id,
                          "--wait", "10"], capture_output=True, text=True, timeout=60, check=False, env=env)
    assert (out.returncode, out.stdout.strip()) == (0, "42"), out.stderr
