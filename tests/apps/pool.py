"""Task handlers for the runner tests: the same behaviours in every pool (the tests pick the
pool per worker), and the faults only a process pool survives."""

from __future__ import annotations

import asyncio
import ctypes
import os
import time
from pathlib import Path

from opentelemetry import trace

from conveyor import App, Retry, current_task
from conveyor.errors import SoftTimeLimitExceeded

app = App("pool")
tracer = trace.get_tracer("tests.apps.pool")
_hoard: list[bytearray] = []


@app.task(name="p.add")
def add(x: int, y: int) -> int:
    return x + y


@app.task(name="p.context")
def context(marker: str = "") -> dict[str, object]:
    """What current_task() shows, and this process's id; fails the first time `marker` is absent."""
    ctx = current_task()
    if marker and not Path(marker).exists():
        Path(marker).touch()
        raise Retry(delay=0)
    return {"id": ctx.id, "name": ctx.name, "queue": ctx.queue, "attempt": ctx.attempt,
            "headers": dict(ctx.headers), "deadline": ctx.deadline, "cancelled": ctx.cancelled,
            "soft": ctx.soft_time_limit_exceeded, "pid": os.getpid()}


@app.task(name="p.acontext")
async def acontext(marker: str = "") -> dict[str, object]:
    return context(marker)


@app.task(name="p.soft")
def soft(started: str) -> str:
    """Runs past its soft limit: a thread sees the flag, a child gets SoftTimeLimitExceeded;
    either way the handler cleans up and re-raises."""
    Path(started).touch()
    try:
        while not current_task().soft_time_limit_exceeded:
            time.sleep(0.01)
        raise SoftTimeLimitExceeded("noticed the flag")
    except SoftTimeLimitExceeded:
        Path(started + ".cleaned").touch()
        raise


@app.task(name="p.asoft")
async def asoft(started: str) -> str:
    Path(started).touch()
    try:
        await asyncio.sleep(3600)
    except asyncio.CancelledError:
        Path(started + ".cleaned").touch()
        raise
    return "never"


@app.task(name="p.traced")
def traced(value: object) -> object:
    with tracer.start_as_current_span("p.traced.inner") as span:
        span.set_attribute("p.pid", os.getpid())
        return value


@app.task(name="p.atraced")
async def atraced(value: object) -> object:
    return traced(value)


def _started(marker: str) -> None:
    Path(marker).write_text(str(os.getpid()))


@app.task(name="p.spin", pool="processes")
def spin(marker: str) -> None:
    """Never returns, in Python: only a hard limit (or a cancel) stops it."""
    _started(marker)
    _hoard.append(bytearray(64 * 1024 * 1024))  # memory the killed child must give back
    while True:
        pass


@app.task(name="p.sleep_forever", pool="processes")
def sleep_forever(marker: str) -> None:
    _started(marker)
    time.sleep(10_000)


@app.task(name="p.c_block", pool="processes")
def c_block(marker: str) -> None:
    """Blocks inside C (libc pause(), the GIL held: ctypes.PyDLL), out of Python's reach."""
    _started(marker)
    ctypes.PyDLL(None).pause()


@app.task(name="p.crash", pool="processes")
def crash(how: str, marker: str, release: str = "") -> str:
    """Ends the child the first time (a segfault, or os._exit(3)), once `release` exists if
    given; returns on a later attempt."""
    if not Path(marker).exists():
        Path(marker).touch()
        while release and not Path(release).exists():
            time.sleep(0.01)
        if how == "segfault":
            ctypes.string_at(0)
        os._exit(3)
    return "survived"


@app.task(name="p.pid", pool="processes")
def pid(value: object = None) -> list[object]:
    return [os.getpid(), value]


@app.task(name="p.hog", pool="processes")
def hog(mib: int) -> int:
    """Keeps `mib` MiB for the rest of the child's life."""
    _hoard.append(bytearray(os.urandom(1024) * 1024 * mib))
    return os.getpid()


@app.task(name="p.sleep", pool="processes")
def sleep(seconds: float, value: object = None, started: str = "") -> object:
    if started:
        _started(started)
    time.sleep(seconds)
    return value


@app.task(name="p.burn", pool="processes")
def burn(n: int) -> int:
    """Pure-Python CPU work."""
    total = 0
    for i in range(n):
        total += i * i % 7
    return total


@app.task(name="p.tsleep")
def tsleep(seconds: float, value: object = None) -> object:
    time.sleep(seconds)
    return value
