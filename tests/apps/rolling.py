"""Two releases of one app for the rolling-deploy test: `old` knows r.keep, `new` knows r.keep
and r.added. Each execution appends "task-id pid" to a file of its own process."""

from __future__ import annotations

import os
from pathlib import Path

from conveyor import App, current_task

old = App("rolling-old")
new = App("rolling-new")


def _trace(log_dir: str) -> None:
    with open(Path(log_dir) / f"exec-{os.getpid()}.log", "a") as f:  # O_APPEND: one write() per line
        f.write(f"{current_task().id} {os.getpid()}\n")


@old.task(name="r.keep")
def keep_v1(log_dir: str, i: int) -> int:
    _trace(log_dir)
    return i


@new.task(name="r.keep")
def keep_v2(log_dir: str, i: int) -> int:
    _trace(log_dir)
    return i


@new.task(name="r.added")
def added(log_dir: str, i: int) -> int:
    _trace(log_dir)
    return -i
