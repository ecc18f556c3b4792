"""Task handlers for the workflow fault tests (tests/faults/test_workflow_faults.py).

Every handler leaves a durable trace of each execution, written before it does anything else
(so an execution cut short by SIGKILL counts too): a line appended (O_APPEND, one write) to a
file the test names. The test counts those lines to tell how often a node ran, and under
which task id and attempt.
"""

from __future__ import annotations

import functools
import json
import os
import time
from pathlib import Path
from typing import Any

from conveyor import App, current_task

app = App("workflow_faults")


def _append(path: str | Path, line: str) -> None:
    """Appends one line in one write() and flushes it to disk: it outlives a SIGKILL of the worker."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def header_value(i: int) -> int:
    """What header `i` of the big chord returns."""
    return 3 * i + 1


@app.task(name="wff.header")
def header(log_dir: str, i: int, seconds: float) -> int:
    """A chord header: records (i, task id, attempt, worker pid, wall time) in its worker's
    file, works for `seconds`, returns header_value(i)."""
    ctx = current_task()
    pid = os.getpgrp()  # the worker's pid, as in tests/apps/faults.py
    _append(Path(log_dir) / f"exec-{pid}.log", f"{i} {ctx.id} {ctx.attempt} {pid} {time.time():.3f}")
    time.sleep(seconds)
    return header_value(i)


@app.task(name="wff.gather")
def gather(results: list[Any], log: str) -> dict[str, int]:
    """A chord callback: records its run and everything it received (one JSON line per run)."""
    ctx = current_task()
    _append(log, json.dumps({"task": ctx.id, "attempt": ctx.attempt, "at": time.time(), "results": results}))
    return {"n": len(results), "sum": sum(results)}


@app.task(name="wff.flaky")
def flaky(log: str, i: int, gate: str | None = None) -> int:
    """A chord header that fails its first attempt; a later one waits for the file `gate` (when
    given) and returns header_value(i). Each attempt appends "i task attempt time" to `log`."""
    ctx = current_task()
    _append(log, f"{i} {ctx.id} {ctx.attempt} {time.time():.3f}")
    if ctx.attempt == 1:
        raise RuntimeError(f"header {i} fails its first attempt on purpose")
    while gate is not None and not Path(gate).exists():
        time.sleep(0.01)
    return header_value(i)


@app.task(name="wff.always_fails")
def always_fails(log: str, i: int) -> None:
    """A header that fails every attempt (recording each, as flaky does)."""
    ctx = current_task()
    _append(log, f"{i} {ctx.id} {ctx.attempt} {time.time():.3f}")
    raise RuntimeError(f"header {i} fails attempt {ctx.attempt}")


@app.task(name="wff.value")
def value(log: str, i: int) -> int:
    """A header that records its run and returns header_value(i)."""
    ctx = current_task()
    _append(log, f"{i} {ctx.id} {ctx.attempt} {time.time():.3f}")
    return header_value(i)


# -- the nested canvas: each step records its label in `log`, one line per execution -----------


@app.task(name="wff.start")
def start(log: str, label: str, number: int, gate: str | None = None) -> int:
    """A first step: records `label`, waits for the file `gate` (when given), returns `number`."""
    _append(log, label)
    while gate is not None and not Path(gate).exists():
        time.sleep(0.01)
    return number


@app.task(name="wff.plus")
def plus(parent: int, log: str, label: str, number: int) -> int:
    """A following step: records `label`, returns parent + number."""
    _append(log, label)
    return parent + number


@app.task(name="wff.digits")
def digits(values: list[int], log: str, label: str) -> int:
    """A chord body: records `label`, returns its values as base-100 digits in the order
    received ([11, 21] -> 1121), so any reordering shows."""
    _append(log, label)
    return functools.reduce(lambda acc, v: acc * 100 + v, values, 0)


@app.task(name="wff.echo")
def echo(*args: Any, log: str, label: str) -> dict[str, Any]:
    """Records `label`, returns what it was called with."""
    _append(log, label)
    return {"args": list(args)}


@app.task(name="wff.boom")
def boom(*args: Any, log: str, label: str, message: str) -> None:
    """Records `label`, then fails with ValueError(message)."""
    _append(log, label)
    raise ValueError(message)


@app.task(name="wff.gated")
def gated(parent: int, log: str, label: str, gate: str, number: int) -> int:
    """Records `label`, waits for the file `gate`, returns parent + number."""
    _append(log, label)
    while not Path(gate).exists():
        time.sleep(0.01)
    return parent + number
