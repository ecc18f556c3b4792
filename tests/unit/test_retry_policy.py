"""The worker's retry policy (outcomes.settle): time limits and a lost child are retried whatever
retry_for says, unless dont_retry_for names them (conveyor.celery's tasks do, for time limits)."""

from __future__ import annotations

import pytest

from conveyor import App, Retry, SoftTimeLimitExceeded, TimeLimitExceeded
from conveyor.context import TaskContext
from conveyor.v1 import task_pb2
from conveyor_worker.outcomes import WorkerLost, settle

app = App("policy")


@app.task(name="p.plain")
def plain() -> None: ...


@app.task(name="p.no_limits_retried", retry_for=(), dont_retry_for=(TimeLimitExceeded, SoftTimeLimitExceeded))
def no_limits() -> None: ...


def retried(task_name: str, exc: Exception) -> bool:
    ack = task_pb2.TaskAck(task_id="t", lease_token="l")
    ctx = TaskContext(id="t", name=task_name, queue="q", attempt=1, max_retries=3, headers={}, deadline=0.0)
    settle(ack, exc, ctx, app.tasks[task_name])
    return ack.failure.retry


@pytest.mark.parametrize(("task_name", "exc", "retry"), [
    ("p.plain", ValueError("x"), True),
    ("p.plain", TimeLimitExceeded("x"), True),
    ("p.plain", WorkerLost("x"), True),
    ("p.no_limits_retried", ValueError("x"), False),
    ("p.no_limits_retried", TimeLimitExceeded("x"), False),
    ("p.no_limits_retried", SoftTimeLimitExceeded("x"), False),
    ("p.no_limits_retried", WorkerLost("x"), True),
    ("p.no_limits_retried", Retry(delay=1), True),
])
def test_what_is_retried(task_name: str, exc: Exception, retry: bool) -> None:
    assert retried(task_name, exc) is retry
