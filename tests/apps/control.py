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
    FOLDER/release exists: the started files count the attempts running at once."""
    Path(folder, f"{label}.started").write_text(str(os.getpid()))
    release = Path(folder, "release")
    while not release.exists():
        time.sleep(0.01)
    return label
