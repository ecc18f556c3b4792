"""Task handlers the workflow tests run in real worker processes. A step that follows another
gets the previous result as its first argument (`parent`); `log` files record each execution,
one line per run, so a test can count them."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from conveyor import App

app = App("workflows")


def _record(log: str, label: str) -> None:
    with open(log, "a") as f:
        f.write(label + "\n")


@app.task(name="wf.add")
def add(x: int, y: int) -> int:
    return x + y


@app.task(name="wf.mul")
def mul(x: int, y: int) -> int:
    return x * y


@app.task(name="wf.tsum")
def tsum(values: list[int]) -> int:
    return sum(values)


@app.task(name="wf.echo")
def echo(*args: Any, **kwargs: Any) -> dict[str, Any]:
    """What it was called with: shows exactly what a node received."""
    return {"args": list(args), "kwargs": kwargs}


@app.task(name="wf.fail")
def fail(*args: Any, message: str = "boom") -> None:
    raise ValueError(message)


@app.task(name="wf.mark")
def mark(log: str, label: str, value: Any = None) -> Any:
    """A first step: records `label`, returns `value`."""
    _record(log, label)
    return value


@app.task(name="wf.then")
def then(parent: int, log: str, label: str, fail_if: str | None = None) -> int:
    """A following step: records `label`, fails while the file `fail_if` exists, else parent + 1."""
    _record(log, label)
    if fail_if is not None and Path(fail_if).exists():
        raise RuntimeError(f"{label} fails while {fail_if} exists")
    return parent + 1


@app.task(name="wf.wait_file")
def wait_file(path: str, value: Any = None) -> Any:
    """Blocks until `path` exists (the test creates it to release the task)."""
    while not Path(path).exists():
        time.sleep(0.01)
    return value


@app.task(name="wf.blob")
def blob(size: int, char: str = "x") -> str:
    """A result of `size` characters."""
    return char * size


@app.task(name="wf.lengths")
def lengths(values: list[str]) -> list[list[Any]]:
    """[first character, length] of each value received, in order."""
    return [[v[:1], len(v)] for v in values]
