"""An app that imports in the worker but not in its child processes (spawn start method):
the process pool must replace such children after a growing pause, not in a tight loop."""

from __future__ import annotations

import multiprocessing

from conveyor import App

if multiprocessing.parent_process() is not None:
    raise RuntimeError("this app cannot be imported in a child process")

app = App("child-fails")


@app.task(name="cf.add")
def add(x: int, y: int) -> int:
    return x + y
