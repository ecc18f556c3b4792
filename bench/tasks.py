"""The benchmark's Conveyor tasks (the worker runs `bench.tasks:app`).

`make_app(target)` makes the same definitions bound to one run's scheduler, so a producer
calls `add.submit(i, i)` as an application does (every scenario's scheduler has its own port,
and an App keeps the client it opened first).
"""

from __future__ import annotations

import time

from bench import work
from conveyor import App, current_task
from conveyor.common import DEFAULT_TARGET


def make_app(scheduler: str = DEFAULT_TARGET) -> App:
    """A new app with the benchmark's tasks, submitting to `scheduler`."""
    app = App("bench", scheduler=scheduler)

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

    @app.task(name="bench.tsum")
    def tsum(values: list[int]) -> dict[str, float]:
        """workflows: a chord's callback. Its header's sum, and when it started (time.time(), its
        first statement): the benchmark times the last header's ack to here."""
        started = time.time()
        return {"sum": sum(values), "started": started}

    return app


app = make_app()
