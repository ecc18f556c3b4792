"""What both systems' runners share: the run's settings, process helpers and the profiler hook."""

from __future__ import annotations

import collections
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from bench.measure import unlimited_pubsub_buffers
from tests.harness import Proc, RedisServer, spawn, wait_for

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Sizes:
    """How much work each scenario does (full run or --quick)."""

    single: int = 10_000
    batch: int = 100_000
    batch_size: int = 1_000
    latency: int = 300
    ordinary: int = 10_000
    many_producers: int = 16_000
    producers: int = 8
    """many_producers' processes (each submits many_producers / producers tasks)."""
    depth_small: int = 1_000
    depth_large: int = 1_000_000
    depth_rounds: int = 16
    """Timed stretches at each depth, alternating (each times depth_small * 0.8 completions)."""
    depth_push_batch: int = 10_000
    fan_in_workers: int = 200
    fan_in_seconds: float = 10.0
    dashboard_tasks: int = 1_000_000
    """Tasks queued (nobody consumes them) behind the dashboard while its pages are timed."""
    dashboard_requests: int = 20
    """Timed GETs per page (after a warm-up)."""
    dashboard_streams: int = 50
    dashboard_seconds: float = 10.0
    """How long the open /events/overview streams (and, before them, none) are metered."""
    cpu_tasks: int = 600
    """cpu_bound: ~20 ms tasks per pool (about 6 s in threads on 2 slots, half that in processes)."""
    cpu_noop: int = 20_000
    """cpu_bound: no-op tasks through the 2 children."""
    workflow_chord: int = 10_000
    """workflows: header tasks of the chord (its callback sums their results)."""
    workflow_chain: int = 1_000
    """workflows: steps of the chain."""
    workflow_rounds: int = 3
    """workflows: timed chords on warm workers (the ack -> callback gap is their p50)."""
    workflow_small_chord: int = 1_000
    """workflows: the chord timed with and without handle.result() following it (WatchWorkflow)."""
    cluster_batch: int = 10_000
    """cluster: tasks of each variant's batch run in each pass, and of each per-primary run (a tenth
    of `batch`: the scenario must fit in about 3 minutes on 2 cores)."""
    cluster_ordinary: int = 500
    """cluster: submit() calls of each variant's ordinary run in each pass (a twentieth of `ordinary`)."""
    cluster_passes: int = 2
    """cluster: passes over the variants, every other one in the reverse order."""
    cluster_micro_calls: int = 5_000
    """cluster: timed EVALSHA calls per client and topology in the Redis clients' micro-benchmark."""
    cluster_micro_rounds: int = 2
    """cluster: rounds of that micro-benchmark (the median is reported)."""
    warmup: int = 300
    celery_calibration: int = 2_000
    celery_batch_seconds: float = 150.0
    """Celery's batch gets about this long at its calibrated rate (but at least a fifth of
    `batch` tasks), so that a slow machine cannot push the run past 15 minutes."""
    timeout: float = 600.0
    """Longest wait for one scenario's tasks to finish."""
    quick: bool = False
    """Fewer Celery pools are calibrated."""


FULL = Sizes()
QUICK = Sizes(single=200, batch=2_000, batch_size=500, latency=30, ordinary=200, many_producers=400,
              depth_small=1_000, depth_large=20_000, depth_rounds=2, depth_push_batch=5_000, fan_in_workers=20,
              fan_in_seconds=2.0, dashboard_tasks=20_000, dashboard_requests=5, dashboard_seconds=2.0, cpu_tasks=40,
              cpu_noop=1_000, workflow_chord=200, workflow_chain=50, workflow_rounds=2, workflow_small_chord=100,
              cluster_batch=500, cluster_ordinary=30, cluster_passes=1, cluster_micro_calls=300,
              cluster_micro_rounds=1,
              warmup=50, celery_calibration=300, timeout=120.0, quick=True)


@dataclass
class Context:
    """One benchmark run: sizes, where logs go, and optional profiling."""

    sizes: Sizes
    work_dir: Path
    profile_dir: Path | None = None
    profile_native: bool = False
    log: Any = print
    notes: list[str] = field(default_factory=list)


def private_redis(work_dir: Path, name: str) -> tuple[RedisServer, redis.Redis]:
    """A redis-server of our own (no AOF, no snapshots) on a free port."""
    server = RedisServer(work_dir / name).start()
    client = redis.Redis(port=server.port)
    unlimited_pubsub_buffers(client)
    return server, client


def start(name: str, args: list[str], work_dir: Path) -> Proc:
    """A child process with its log in work_dir (tests.harness.spawn: PYTHONPATH and cwd are the repo).
    __main__ already dropped OTEL_* and CONVEYOR_REDIS_URL from the environment children inherit."""
    return spawn(name, args, work_dir)


def stop(proc: Proc, timeout: float = 15.0) -> None:
    """SIGTERM, then SIGKILL to the process group if it does not exit in time."""
    if proc.alive():
        proc.popen.send_signal(signal.SIGTERM)
        try:
            proc.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.popen.pid, signal.SIGKILL)
            proc.popen.wait(10)


def wait_log(proc: Proc, text: str, timeout: float = 60.0, count: int = 1) -> None:
    """Waits until the child's log holds `text` `count` times (fails at once if the child died)."""
    def seen() -> bool:
        if not proc.alive():
            raise RuntimeError(f"{proc.name} exited:\n{proc.output()[-3000:]}")
        return proc.output().count(text) >= count
    wait_for(seen, timeout, interval=0.05, what=f"{proc.name} to log {text!r}")


class Profiler:
    """py-spy record on some processes while a block runs (raw collapsed stacks), when asked for."""

    def __init__(self, ctx: Context, label: str, pids: dict[str, int]) -> None:
        self.ctx = ctx
        self.label = label
        self.pids = pids
        self.procs: list[tuple[str, subprocess.Popen[bytes], Path]] = []

    def __enter__(self) -> Profiler:
        if self.ctx.profile_dir is None:
            return self
        spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        if not Path(spy).exists():
            self.ctx.notes.append("--profile: py-spy is not installed (pip install py-spy); not profiled")
            self.ctx.profile_dir = None
            return self
        self.ctx.profile_dir.mkdir(parents=True, exist_ok=True)
        for role, pid in self.pids.items():
            out = self.ctx.profile_dir / f"{self.label}-{role}.txt"
            native = ["--native"] if self.ctx.profile_native else ["--nonblocking"]
            popen = subprocess.Popen([spy, "record", "--pid", str(pid), "--format", "raw", "--rate", "250",
                                      *native, "--output", str(out)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            self.procs.append((role, popen, out))
        time.sleep(0.5)  # py-spy attaches
        return self

    def __exit__(self, *exc: object) -> None:
        for _, popen, _ in self.procs:
            popen.send_signal(signal.SIGINT)
        for _, popen, _ in self.procs:
            try:
                popen.wait(30)
            except subprocess.TimeoutExpired:
                popen.kill()

    def summaries(self, top: int = 15) -> dict[str, dict[str, Any]]:
        return {role: summarize_profile(out, top) for role, _, out in self.procs if out.exists()}


IDLE_LEAVES = ("EpollSelector.select (", "epoll_wait", "_worker (futures/thread.py)", "Condition.wait (",
               "pthread_cond", "futex", "sem_clockwait", "sem_timedwait", "Thread.run (threading.py)")
"""Leaf frames of a thread that waits rather than works: the event loop's select, idle pool
threads, and grpc's poller thread (its Cython/C part, mostly epoll_wait, shows as Thread.run)."""

BOILERPLATE = ("runpy>)", "click/core.py)", "asyncio/runners.py)", "asyncio/base_events.py)", "threading.py)",
               "__main__.py)", "/cli.py)", "asyncio/events.py)", "futures/thread.py)")
"""Frames every stack passes through: left out of the inclusive ranking (kept in the own-time one)."""

COMPONENTS = (("conveyor_scheduler/", "conveyor_scheduler"), ("conveyor_worker/", "conveyor_worker"),
              ("conveyor/", "conveyor SDK"), ("opentelemetry/", "opentelemetry"), ("grpc", "grpc"),
              ("redis/", "redis-py"), ("hiredis", "redis-py"), ("protobuf", "protobuf"), ("asyncio/", "asyncio"),
              ("_asynciomodule", "asyncio"), ("socket", "syscalls"), ("libc", "syscalls"))


def summarize_profile(path: Path, top: int = 15) -> dict[str, Any]:
    """A py-spy raw profile in short: the busiest functions by own samples and by inclusive samples
    (percent of busy samples, idle waits left out), and own samples by component."""
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    components: collections.Counter[str] = collections.Counter()
    total = idle = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        raw = stack.split(";")
        frames = [f for f in (_short(f) for f in raw) if f]
        if not frames:
            continue
        total += count
        if any(mark in frames[-1] or mark in raw[-1] for mark in IDLE_LEAVES):
            idle += count
            continue
        own[frames[-1]] += count
        components[_component(raw[-1])] += count
        for frame in set(frames):
            if not frame.endswith(BOILERPLATE):
                inclusive[frame] += count
    busy = total - idle

    def pct(counter: collections.Counter[str], n: int) -> list[tuple[str, float]]:
        return [(name, round(100 * c / busy, 1)) for name, c in counter.most_common(n)] if busy else []

    return {"samples": total, "idle_pct": round(100 * idle / total, 1) if total else 0.0,
            "components": pct(components, 12), "self": pct(own, top), "inclusive": pct(inclusive, top),
            "file": str(path)}


def _component(frame: str) -> str:
    for mark, name in COMPONENTS:
        if mark in frame:
            return name
    return "other"


def _short(frame: str) -> str:
    """'fn (/long/path/pkg/mod.py:123)' -> 'fn (pkg/mod.py)'; drops frames with no location."""
    name, _, where = frame.partition(" (")
    if not where:
        return ""
    path = where.rstrip(")").rsplit(":", 1)[0]
    parts = Path(path).parts
    return f"{name} ({'/'.join(parts[-2:])})"
