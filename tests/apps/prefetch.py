"""Handlers for the prefetch tests: each leaves traces a test can count across processes.

`pf.track` (a plain function) and `pf.atrack` (async) mark themselves running with a file
named after their process and label, count how many handlers of their own process run at
that moment (written to `entered-<pid>.log`), wait for their gate file, then unmark and
append their label to `order.log`.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

from conveyor import App

app = App("prefetch")


def _enter(folder: str, label: str) -> Path:
    pid = os.getpid()
    mark = Path(folder) / f"running-{pid}-{label}"
    mark.touch()
    running = len(list(Path(folder).glob(f"running-{pid}-*")))
    with open(Path(folder) / f"entered-{pid}.log", "a") as f:  # O_APPEND: one write() per line
        f.write(f"{label} {running}\n")
    return mark


def _leave(folder: str, label: str, mark: Path) -> str:
    mark.unlink()
    with open(Path(folder) / "order.log", "a") as f:
        f.write(label + "\n")
    return label


@app.task(name="pf.track")
def track(folder: str, label: str, gate: str) -> str:
    mark = _enter(folder, label)
    while not Path(gate).exists():
        time.sleep(0.01)
    return _leave(folder, label, mark)


@app.task(name="pf.atrack")
async def atrack(folder: str, label: str, gate: str) -> str:
    mark = _enter(folder, label)
    while not Path(gate).exists():
        await asyncio.sleep(0.01)
    return _leave(folder, label, mark)
