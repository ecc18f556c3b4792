"""The same behaviours in every runner: async handlers on the loop, plain functions in
threads, plain functions in child processes (one parametrized suite, real worker processes)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from conveyor import Client, TaskFailed, TaskState
from tests.harness import Cluster, Proc, connected, wait_for
from tests.integration.test_telemetry import Otel, otel, receiver  # noqa: F401 - fixtures

APP = "tests.apps.pool:app"
RUNNERS = {
    # runner -> (worker flags, the name of each behaviour's task there)
    "loop": (("--pool", "threads"), "p.a"),
    "threads": (("--pool", "threads"), "p."),
    "processes": (("--pool", "processes"), "p."),
}


def task(runner: str, name: str) -> str:
    """The task of behaviour `name` in `runner`: p.context, or its async twin p.acontext."""
    return RUNNERS[runner][1] + name


@pytest.fixture(params=list(RUNNERS))
def runner(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def start(cluster: Cluster, redis_url: str, runner: str, *args: str, concurrency: int = 2) -> tuple[str, Proc]:
    scheduler, target = cluster.scheduler(redis_url)
    worker = cluster.worker(target, APP, *RUNNERS[runner][0], *args, concurrency=concurrency)
    connected(scheduler, worker)
    return target, worker


@pytest.fixture
def stack(cluster: Cluster, redis_url: str, runner: str) -> Iterator[tuple[Client, Proc]]:
    target, worker = start(cluster, redis_url, runner)
    with Client(target) as client:
        yield client, worker


def test_current_task_and_retries(stack: tuple[Client, Proc], runner: str, tmp_path: Path) -> None:
    client, worker = stack
    handle = client.submit(task(runner, "context"), [str(tmp_path / "once")], headers={"k": "v"}, timeout=30,
                           max_retries=2)
    seen = handle.result(timeout=30)
    record = client.get_task(handle.id)
    assert record.state == TaskState.SUCCEEDED
    assert (seen["id"], seen["name"], seen["queue"], seen["attempt"]) == (handle.id, task(runner, "context"),
                                                                          "default", 2)
    assert seen["headers"]["k"] == "v"
    assert abs(seen["deadline"] - (record.started_at.ToMilliseconds() / 1000 + 30)) < 1
    assert (seen["cancelled"], seen["soft"]) == (False, False)
    in_child = seen["pid"] != worker.popen.pid
    assert in_child == (runner == "processes")
    assert [a.error.type for a in record.attempts] == ["Retry"]


def test_soft_time_limit(stack: tuple[Client, Proc], runner: str, tmp_path: Path) -> None:
    """Past the soft limit the handler can clean up; the attempt is SoftTimeLimitExceeded, retried per policy."""
    client, _ = stack
    marker = tmp_path / "soft"
    handle = client.submit(task(runner, "soft"), [str(marker)], soft_timeout=0.5, timeout=20, max_retries=1,
                           retry_backoff=0)
    with pytest.raises(TaskFailed) as failed:
        handle.result(timeout=30)
    assert failed.value.error_type == "SoftTimeLimitExceeded"
    assert Path(str(marker) + ".cleaned").exists()
    record = client.get_task(handle.id)
    assert (record.state, record.attempt) == (TaskState.DEAD, 2)
    assert [a.error.type for a in record.attempts] == ["SoftTimeLimitExceeded"] * 2


def test_tracing(otel: Otel, cluster: Cluster, redis_url: str, runner: str) -> None:  # noqa: F811
    """The CONSUMER span covers the handler, and a span the handler opens is its child."""
    target, worker = start(cluster, redis_url, runner)
    name = task(runner, "traced")
    with Client(target) as client:
        handle = client.submit(name, ["hi"])
        assert handle.result(timeout=30) == "hi"
    otel.producer.force_flush()
    send = wait_for(lambda: [s for s in otel.spans() if s.name == "send default"], what="the producer span")[0]
    spans = otel.wait_trace(send.trace_id, {"process default", "p.traced.inner"})
    process = next(s for s in spans if s.name == "process default")
    inner = next(s for s in spans if s.name == "p.traced.inner")
    assert (process.kind, process.parent_span_id, process.attributes["conveyor.task.outcome"]) == (
        "CONSUMER", send.span_id, "succeeded")
    assert (inner.trace_id, inner.parent_span_id) == (process.trace_id, process.span_id)
    assert process.start_ns <= inner.start_ns <= inner.end_ns <= process.end_ns
    assert (inner.attributes["p.pid"] != worker.popen.pid) == (runner == "processes")
