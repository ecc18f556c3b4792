"""Task handlers the tests run in real worker processes."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

from conveyor import App

app = App("tests")


@app.task(name="t.add")
def add(x: int, y: int) -> int:
    return x + y


@app.task(name="t.echo")
async def echo(value: object) -> object:
    return value


@app.task(name="t.record")
def record(path: str, label: str) -> str:
    """Appends `label` to a file: the file's lines are the execution order."""
    with open(path, "a") as f:
        f.write(label + "\n")
    return label


@app.task(name="t.sleep")
def sleep(seconds: float, value: object = None) -> object:
    time.sleep(seconds)
    return value


@app.task(name="t.async_sleep")
async def async_sleep(seconds: float, value: object = None) -> object:
    await asyncio.sleep(seconds)
    return value


@app.task(name="t.wait_file")
def wait_file(path: str, value: object = None) -> object:
    """Blocks until `path` exists (tests create it to release the task)."""
    while not Path(path).exists():
        time.sleep(0.01)
    return value


@app.task(name="t.fail")
def fail(message: str = "boom") -> None:
    raise ValueError(message)


@app.task(name="t.pid")
def pid(value: object = None) -> list[object]:
    return [os.getpid(), value]
