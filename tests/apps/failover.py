"""The failover test's task (tests/cluster/failover_run.py): `fo.add` works for a few
milliseconds, then appends one line per completed execution to its worker's file (so a task
that ran twice shows twice) and returns x + y."""

from __future__ import annotations

import os
import time
from pathlib import Path

from conveyor import App, current_task

app = App("failover")


@app.task(name="fo.add")
def add(x: int, y: int, seconds: float, log_dir: str) -> int:
    time.sleep(seconds)
    ctx = current_task()
    # The worker's pid (a child process's too: the harness makes each worker a process group).
    with open(Path(log_dir) / f"runs-{os.getpgrp()}.log", "a") as f:  # O_APPEND: one write() per line
        f.write(f"{x} {ctx.id} {ctx.attempt}\n")
    return x + y
