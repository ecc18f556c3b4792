"""Task handlers for the telemetry tests: one that fails once, one that starts a span of its own."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from opentelemetry import trace

from conveyor import App

app = App("tel")
tracer = trace.get_tracer("tests.apps.flaky")


@app.task(name="tel.add")
def add(x: int, y: int) -> int:
    return x + y


@app.task(name="tel.traced")
def traced(value: object) -> object:
    """A sync handler (thread pool) that opens a span: it must be the attempt span's child."""
    with tracer.start_as_current_span("tel.traced.inner") as span:
        span.set_attribute("tel.value", str(value))
        return value


@app.task(name="tel.flaky")
def flaky(marker: str, value: object = None) -> object:
    """Fails the first time (creating `marker`), succeeds on every later attempt."""
    path = Path(marker)
    if not path.exists():
        path.touch()
        raise RuntimeError("first attempt fails on purpose")
    return value


@app.task(name="tel.block")
async def block(started: str) -> None:
    """Marks `started`, then waits until it is cancelled."""
    Path(started).touch()
    await asyncio.Event().wait()


@app.task(name="tel.sleep")
def sleep(started: str, seconds: float) -> None:
    """A sync handler that marks `started`, then sleeps (it outlives a short grace period)."""
    Path(started).touch()
    time.sleep(seconds)


@app.task(name="tel.fail")
def fail(message: str = "boom") -> None:
    raise ValueError(message)
