"""A real `conveyor-dashboard` process (`python -m conveyor_dashboard`) in front of a scheduler,
and an HTTP client for it; the browser tests and the bench's dashboard scenario start it so."""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path

import httpx2 as httpx

from tests.harness import Proc, free_port, spawn, wait_for

LISTENING = re.compile(r"conveyor-dashboard listening on (https?://\S+)")


@dataclass
class Dashboard:
    proc: Proc
    url: str
    """Base URL without a trailing slash, e.g. http://127.0.0.1:8123."""
    scheduler: str

    def http(self) -> httpx.Client:
        """A client that keeps cookies and does not follow redirects (tests look at the 303s)."""
        return httpx.Client(base_url=self.url, follow_redirects=False, timeout=10)


def start_dashboard(log_dir: Path, scheduler: str, *args: str, name: str = "dashboard",
                    started: list[Proc] | None = None) -> Dashboard:
    """Starts the dashboard on a free loopback port and waits for its `listening on` line
    (then for it to answer HTTP), failing with its log if it exits first. The process is added
    to `started` (e.g. a Cluster's procs, which stops them) before anything is waited on."""
    port = free_port()
    cmd = [sys.executable, "-m", "conveyor_dashboard", "--scheduler", scheduler, "--host", "127.0.0.1",
           "--port", str(port), *args]
    proc = spawn(name, cmd, log_dir)
    if started is not None:
        started.append(proc)
    match = wait_for(lambda: LISTENING.search(proc.output()) or not proc.alive(), 30,
                     what="the dashboard's 'listening on' line")
    assert proc.alive(), f"the dashboard exited ({proc.popen.returncode}):\n{proc.output()}"
    assert isinstance(match, re.Match)
    url = match.group(1).rstrip("/")
    wait_for(lambda: _answers(url), 15, what="the dashboard to answer HTTP")
    return Dashboard(proc, url, scheduler)


def _answers(url: str) -> bool:
    try:
        return httpx.get(f"{url}/signin", timeout=2).status_code < 500
    except httpx.HTTPError:
        return False
