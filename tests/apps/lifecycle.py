"""Handlers for the task-lifecycle tests: flaky, cooperative, time-limited, context-aware."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from conveyor import App, Retry, SoftTimeLimitExceeded, current_task

app = App("lifecycle")


@app.task(name="life.noop")
def noop(value: object = None) -> object:
    return value


@app.task(name="life.flaky")
def flaky(counter: str, fail_times: int) -> int:
    """Fails until it has been called more than `fail_times` times (counted in a file)."""
    path = Path(counter)
    calls = int(path.read_text()) + 1 if path.exists() else 1
    path.write_text(str(calls))
    if calls <= fail_times:
        raise ConnectionError(f"call {calls} fails")
    return calls


@app.task(name="life.always_fails")
def always_fails() -> None:
    raise ConnectionError("still down")


@app.task(name="life.not_retryable", dont_retry_for=(KeyError,))
def not_retryable() -> None:
    raise KeyError("bad key")


@app.task(name="life.retry_later")
def retry_later(counter: str) -> str:
    path = Path(counter)
    calls = int(path.read_text()) + 1 if path.exists() else 1
    path.write_text(str(calls))
    if calls == 1:
        raise Retry(delay=0.3, reason="not yet")
    return "done"


@app.task(name="life.async_forever")
async def async_forever(started: str) -> None:
    Path(started).touch()
    await asyncio.sleep(3600)


@app.task(name="life.cooperative")
def cooperative(started: str) -> str:
    """A plain function that polls its cancel flag, as a long job would."""
    Path(started).touch()
    ctx = current_task()
    while not ctx.cancelled:
        time.sleep(0.01)
    return "stopped early"


@app.task(name="life.async_slow")
async def async_slow(seconds: float) -> str:
    await asyncio.sleep(seconds)
    return "finished"


@app.task(name="life.sync_soft")
def sync_soft() -> str:
    ctx = current_task()
    while not ctx.soft_time_limit_exceeded:
        time.sleep(0.01)
    raise SoftTimeLimitExceeded("cleaned up after the soft limit")


@app.task(name="life.sync_stuck")
def sync_stuck(seconds: float) -> str:
    time.sleep(seconds)
    return "too late"


@app.task(name="life.context")
def context() -> dict[str, object]:
    ctx = current_task()
    return {"id": ctx.id, "attempt": ctx.attempt, "queue": ctx.queue, "headers": dict(ctx.headers),
            "name": ctx.name, "has_deadline": ctx.deadline > time.time()}
