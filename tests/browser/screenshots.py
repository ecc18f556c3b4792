"""Screenshots: every page's PNG as a test artifact (not committed) for a person to look at, and
the two README images under docs/ (committed), made the same way.

Artifacts go to $CONVEYOR_TEST_ARTIFACTS, else .pytest_artifacts/ at the repository root (gitignored).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from selenium import webdriver

from tests.harness import ROOT

README_OVERVIEW = ROOT / "docs" / "dashboard-overview.png"
README_FAILED_TASK = ROOT / "docs" / "dashboard-failed-task.png"


def artifacts_dir() -> Path:
    path = Path(os.environ.get("CONVEYOR_TEST_ARTIFACTS") or ROOT / ".pytest_artifacts") / "browser"
    path.mkdir(parents=True, exist_ok=True)
    return path


def screenshot(driver: webdriver.Chrome, name: str) -> Path:
    """Saves the current page as artifacts/browser/NAME.png and returns the path."""
    path = artifacts_dir() / (re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") + ".png")
    assert driver.save_screenshot(str(path)), f"could not save {path}"
    return path


def write_readme_images(driver: webdriver.Chrome, base_url: str, failed_task_id: str) -> list[Path]:
    """Writes docs/dashboard-overview.png and docs/dashboard-failed-task.png from a running
    dashboard (the browser already signed in if it needs to be). test_pages calls it when
    CONVEYOR_README_IMAGES=1: `CONVEYOR_README_IMAGES=1 .venv/bin/python -m pytest tests/browser/test_pages.py`."""
    written = []
    for url, path in ((f"{base_url}/", README_OVERVIEW), (f"{base_url}/tasks/{failed_task_id}", README_FAILED_TASK)):
        driver.get(url)
        path.parent.mkdir(parents=True, exist_ok=True)
        assert driver.save_screenshot(str(path)), f"could not save {path}"
        written.append(path)
    return written
