"""The benchmark's Conveyor tasks (the worker runs `bench.tasks:app`)."""

from __future__ import annotations

from bench import work
from conveyor import App, current_task

app = App("bench")


@app.task(name="bench.add")
def add(x: int, y: int) -> int:
    return x + y


@app.task(name="bench.whoami")
def whoami() -> str:
    """Takes no payload and returns its own task id, so a payload-less task still proves its result."""
    return current_task().id


@app.task(name="bench.burn")
def burn(n: int) -> int:
    """cpu_bound: pure-Python work (no pool named: the worker's --pool decides where it runs)."""
    return work.burn(n)
