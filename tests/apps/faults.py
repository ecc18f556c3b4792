"""Task handlers for the fault suite: each execution leaves a trace the test can count.

`f.work` appends one line per execution (task id, attempt, worker pid, wall time) to a file of its
worker before it sleeps, so an execution cut short by SIGKILL is counted too. Its result carries the
expected value plus the attempt and pid that produced it, so the test can check that the
recorded outcome came from the lease holder of record, never from a stale attempt.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from conveyor import App, current_task

app = App("faults")


@app.task(name="f.work")
def work(log_dir: str, i: int, seconds: float) -> dict[str, int]:
    ctx = current_task()
    pid = os.getpgrp()  # the worker's pid, in a child process too: the harness makes each worker a group
    with open(Path(log_dir) / f"exec-{pid}.log", "a") as f:  # O_APPEND: one write() per line
        f.write(f"{ctx.id} {ctx.attempt} {pid} {time.time():.3f}\n")
    time.sleep(seconds)
    return {"value": i * i, "attempt": ctx.attempt, "pid": pid}


def expected(i: int) -> int:
    return i * i
