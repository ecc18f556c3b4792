"""Fixtures of the dashboard's tests in a real browser: headless Chromium (Selenium), and a
real dashboard process in front of a real scheduler, worker and Redis (tests/harness.py).

`stack`: no auth on the scheduler, so the dashboard needs no sign-in. `secured_stack`: the
scheduler reads an auth file with an admin, a reader and a worker token; the dashboard signs
each browser in with its own token.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

from conveyor import Client
from tests.auth_calls import auth_file
from tests.browser.chrome import ChromiumPaths, require_chromium, start_chrome
from tests.browser.dashboard_process import Dashboard, start_dashboard
from tests.browser.screenshots import screenshot
from tests.harness import Cluster, Proc, connected

ADMIN_TOKEN = "admin-secret-0123456789"
READER_TOKEN = "reader-secret-0123456789"
WORKER_TOKEN = "worker-secret-0123456789"


@dataclass
class Stack:
    """One test's dashboard and what stands behind it."""

    dashboard: Dashboard
    client: Client
    """An SDK client to the same scheduler (admin where auth is on), to set up and check state."""
    scheduler: Proc
    worker: Proc

    @property
    def url(self) -> str:
        return self.dashboard.url


@pytest.fixture(scope="session")
def chromium() -> ChromiumPaths:
    return require_chromium()


@pytest.fixture
def browser(chromium: ChromiumPaths, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[webdriver.Chrome]:
    driver = start_chrome(chromium, tmp_path)
    try:
        yield driver
    finally:
        report = getattr(request.node, "rep_call", None)
        if report is not None and report.failed:
            try:
                shot = screenshot(driver, "FAILED-" + request.node.name)
                print(f"browser at {driver.current_url}; screenshot {shot}")
            except Exception as exc:  # a dead browser must not hide the test's own failure
                print(f"no failure screenshot: {exc}")
        driver.quit()


def _stack(cluster: Cluster, redis_url: str, scheduler_args: tuple[str, ...], worker_args: tuple[str, ...],
           token: str | None) -> Iterator[Stack]:
    scheduler, target = cluster.scheduler(redis_url, *scheduler_args)
    worker = cluster.worker(target, "tests.apps.basic:app", *worker_args, concurrency=2)
    connected(scheduler, worker)
    dashboard = start_dashboard(cluster.log_dir, target, started=cluster.procs)
    with Client(target, token=token) as client:
        yield Stack(dashboard, client, scheduler, worker)


@pytest.fixture
def stack(cluster: Cluster, redis_url: str) -> Iterator[Stack]:
    """Scheduler without auth, one worker of tests.apps.basic on `default`, the dashboard."""
    yield from _stack(cluster, redis_url, (), (), None)


@pytest.fixture
def secured_stack(cluster: Cluster, redis_url: str, tmp_path: Path) -> Iterator[Stack]:
    """Scheduler with --auth-file (tokens admin, reader, worker), its worker, the dashboard."""
    tokens = auth_file(tmp_path / "tokens.toml", {ADMIN_TOKEN: ("alice", ["admin"], None),
                                                  READER_TOKEN: ("rita", ["reader"], None),
                                                  WORKER_TOKEN: ("worker", ["worker"], None)})
    yield from _stack(cluster, redis_url, ("--auth-file", str(tokens)), ("--token", WORKER_TOKEN), ADMIN_TOKEN)


def sign_in(driver: webdriver.Chrome, base_url: str, token: str) -> None:
    """Signs the browser in through the sign-in form and waits to land off it."""
    driver.get(f"{base_url}/signin")
    field = WebDriverWait(driver, 10).until(ec.presence_of_element_located((By.NAME, "token")))
    field.send_keys(token)
    field.submit()
    WebDriverWait(driver, 10).until(lambda d: "/signin" not in d.current_url)
