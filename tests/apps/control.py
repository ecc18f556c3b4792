"""Handlers for the worker-control tests: each marks its start in a folder, then blocks."""

from __future__ import annotations

import os
import time
from pathlib import Path

from conveyor import App

app = App("control")


@app.task(name="ctl.hold")
def hold(folder: str, label: str) -> str:
    """Writes FOLDER/LABEL.started (the worker's pid) on entry, then blocks until
    FOLDER/release or FOLDER/LABEL.release exists: the started files count the attempts
    that began."""
    Path(folder, f"{label}.started").write_text(str(os.getpid()))
    release, mine = Path(folder, "release"), Path(folder, f"{label}.release")
    while not release.exists() and not mine.exists():
        time.sleep(0.01)
    return label
