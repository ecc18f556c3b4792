"""Real parts for tests: a Redis server, scheduler and worker processes on free ports.

Everything waits on conditions (health checks, task states), never on fixed sleeps.
"""

from __future__ import annotations

import collections
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import grpc
import redis
from grpc_health.v1 import health_pb2, health_pb2_grpc
from redis.cluster import RedisCluster

from conveyor_scheduler.embedded_redis import find_redis_server
from conveyor_scheduler.keys import QueueKeys
from conveyor_scheduler.redis_clients import is_cluster, sync_client

ROOT = Path(__file__).resolve().parent.parent
T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def unknown_id_like(task_id: str) -> str:
    """A well-formed id of the same queue and millisecond that no task has: the 15th
    character (bits 59..55 of the counter) changes, 2**55 ids away. Changing the last
    character is not enough: ids minted in one millisecond count up by 1."""
    return task_id[:14] + ("0" if task_id[14] != "0" else "1") + task_id[15:]


def wait_for(predicate: Callable[[], T], timeout: float = 30.0, interval: float = 0.02, what: str = "condition") -> T:
    """Returns the first truthy value of predicate(), or fails after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


@dataclass
class Proc:
    """A child process with its log file."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def alive(self) -> bool:
        return self.popen.poll() is None

    def kill(self) -> None:
        if self.alive():
            self.popen.kill()
        self.popen.wait(10)

    def terminate(self, timeout: float = 30.0) -> int:
        if self.alive():
            self.popen.send_signal(signal.SIGTERM)
        return self.popen.wait(timeout)

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def spawn(name: str, args: list[str], log_dir: Path, env: dict[str, str] | None = None) -> Proc:
    log = log_dir / f"{name}.log"
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1", **(env or {})}
    full_env.pop("CONVEYOR_REDIS_URL", None)
    with log.open("wb") as out:  # the child keeps its own descriptor
        popen = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, env=full_env,
                                 start_new_session=True)
    return Proc(name, popen, log)


class RedisServer:
    """A private redis-server for the test session (never the machine's shared one)."""

    def __init__(self, data_dir: Path, *, port: int = 0, appendonly: bool = False, fsync: str = "everysec") -> None:
        self.port = port or free_port()
        self.data_dir = data_dir
        self.appendonly = appendonly
        self.fsync = fsync
        self.proc: subprocess.Popen[bytes] | None = None
        self._next_db = 0

    def start(self, *config: str, answering: bool = True) -> RedisServer:
        """Starts redis-server (`config`: more options, e.g. "--key-load-delay", "1000") and waits
        until it answers; answering=False returns once it is started (a server replaying a large
        AOF refuses commands with LOADING until it is done)."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        args = [find_redis_server(), "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                "--databases", "4096", "--dir", str(self.data_dir), "--logfile", "redis.log",
                "--appendonly", "yes" if self.appendonly else "no", "--appendfsync", self.fsync, *config]
        for _ in range(20):
            self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL)
            proc = self.proc
            wait_for(lambda proc=proc: _listening(self.port) or proc.poll() is not None, 15,
                     what="redis-server to listen")
            if proc.poll() is None:
                break
            log = (self.data_dir / "redis.log").read_text(errors="replace")[-2000:]
            if "Address already in use" not in log:
                raise AssertionError(f"redis-server exited at start ({proc.returncode}):\n{log}")
            # Something took the port while it was down (a client reconnecting to it can be given
            # that very port as its own, and connect to itself): start again once it is free.
            wait_for(lambda: not _listening(self.port), 10, what=f"port {self.port} to be free again")
        else:
            raise AssertionError(f"redis-server could not bind port {self.port}")
        if answering:
            with redis.Redis(port=self.port) as client:
                wait_for(lambda: pings(client), 15, what="redis-server to answer")
        return self

    def stop(self, hard: bool = False) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL if hard else signal.SIGTERM)
            self.proc.wait(15)

    def url(self) -> str:
        """A fresh logical database per call, so tests never share state."""
        self._next_db += 1
        return f"redis://127.0.0.1:{self.port}/{self._next_db}"


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


def redis_client(url: str) -> redis.Redis | RedisCluster:
    """A synchronous client of a test's Redis, one server or a cluster (redis+cluster://): the
    scheduler's own choice of client for the URL (redis_clients.sync_client)."""
    return sync_client(url)


def pings(client: redis.Redis) -> bool:
    """True once `client`'s Redis answers a PING (False while it cannot be reached)."""
    try:
        return bool(client.ping())
    except redis.exceptions.ConnectionError:
        return False


def process_group(pgid: int) -> list[int]:
    """Live (not zombie) processes of process group `pgid`. spawn() starts each process in a
    session of its own, so a worker's group is the worker, its fork server and its children."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid and fields[0] != "Z":
                pids.append(int(entry.name))
    return pids


def worker_id(proc: Proc) -> str:
    """The --worker-id a worker process was started with."""
    args = list(proc.popen.args)  # type: ignore[arg-type]
    return str(args[args.index("--worker-id") + 1])


def connected(scheduler: Proc, worker: Proc) -> None:
    """Waits until `scheduler` attached the worker's stream (its hello credit is usable)."""
    wid = worker_id(worker)
    wait_for(lambda: f"worker {wid} connected" in scheduler.output(), what=f"{wid} to connect")


@dataclass(frozen=True)
class ClientTLS:
    """PEM files a test client uses against a TLS scheduler: the CA it trusts and, for mutual
    TLS, its own certificate and key."""

    ca: Path
    cert: Path | None = None
    key: Path | None = None

    def credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(self.ca.read_bytes(), self.key.read_bytes() if self.key else None,
                                            self.cert.read_bytes() if self.cert else None)

    def channel(self, target: str) -> grpc.Channel:
        return grpc.secure_channel(target, self.credentials())


def serving(target: str, tls: ClientTLS | None = None) -> bool:
    try:
        with (tls.channel(target) if tls else grpc.insecure_channel(target)) as ch:
            resp = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=1)
            return resp.status == health_pb2.HealthCheckResponse.SERVING
    except grpc.RpcError:
        return False


@dataclass
class Cluster:
    """Processes started by one test; all are stopped at teardown."""

    log_dir: Path
    procs: list[Proc] = field(default_factory=list)

    def scheduler(self, redis_url: str | None, *args: str, port: int = 0, name: str = "scheduler",
                  data_dir: Path | None = None, tls: ClientTLS | None = None) -> tuple[Proc, str]:
        """Starts a scheduler and waits until it serves. /metrics is off (its default port would
        collide between replicas) unless `args` give a --metrics-port, which wins: the last one does.
        A scheduler given --tls-cert needs `tls`: what the readiness check trusts and presents."""
        port = port or free_port()
        cmd = [sys.executable, "-m", "conveyor_scheduler", "--port", str(port), "--reaper-interval", "0.2",
               "--log-level", "INFO", "--metrics-port", "0", *args]
        cmd += ["--redis-url", redis_url] if redis_url else ["--data-dir", str(data_dir or self.log_dir / "data")]
        proc = spawn(name, cmd, self.log_dir)
        self.procs.append(proc)
        target = f"127.0.0.1:{port}"
        wait_for(lambda: serving(target, tls) or _dead(proc), 30, what=f"{name} to serve")
        assert proc.alive(), f"{name} died:\n{proc.output()}"
        return proc, target

    def worker(self, target: str, app: str = "tests.apps.basic:app", *args: str, queues: str = "default",
               concurrency: int = 4, name: str = "worker") -> Proc:
        cmd = [sys.executable, "-m", "conveyor_worker", app, "--scheduler", target, "--queues", queues,
               "--concurrency", str(concurrency), "--worker-id", f"{name}-{len(self.procs)}", *args]
        proc = spawn(name, cmd, self.log_dir)
        self.procs.append(proc)
        return proc

    def stop_all(self) -> None:
        for proc in reversed(self.procs):
            if proc.alive():
                os.killpg(proc.popen.pid, signal.SIGKILL)
            proc.popen.wait(10)


def _dead(proc: Proc) -> bool:
    return not proc.alive()


class CompletionCounter:
    """Counts completion announcements per task id while running: cv:done on one server, each
    of `queues`' shard channel cv:{q:QUEUE}:done on a cluster."""

    def __init__(self, url: str, queues: tuple[str, ...] = ("default",)) -> None:
        self.counts: collections.Counter[str] = collections.Counter()
        if is_cluster(url):
            self._pubsub = redis_client(url).pubsub(ignore_subscribe_messages=True)
            self._pubsub.ssubscribe(**{QueueKeys.of(q).shard_channel("done"): self._on for q in queues})
            self._thread = self._pubsub.run_in_thread(sleep_time=0.05, daemon=True, sharded_pubsub=True)
        else:
            self._pubsub = redis.Redis.from_url(url).pubsub(ignore_subscribe_messages=True)
            self._pubsub.subscribe(**{"cv:done": self._on})
            self._thread = self._pubsub.run_in_thread(sleep_time=0.05, daemon=True)

    def _on(self, msg: dict[str, bytes]) -> None:
        self.counts[msg["data"].decode()] += 1

    def stop(self) -> None:
        self._thread.stop()
        self._thread.join(5)
