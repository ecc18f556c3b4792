"""Measuring helpers shared by both systems: process CPU/RSS from /proc, percentiles, and a
completion listener on Redis pub/sub.

Both systems announce each finished task on Redis pub/sub (Conveyor on ``cv:done`` with the
task id, Celery's Redis result backend on ``celery-task-meta-<id>`` with the result), so the
benchmark times "every task is done" the same way for both, from outside either system.
"""

from __future__ import annotations

import collections
import math
import os
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import redis

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
ROOT = Path(__file__).resolve().parent.parent


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (all its threads; not its children)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2:].split()  # the name may contain spaces
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def tree_cpu_seconds(pid: int) -> float:
    """cpu_seconds of a process and all its living descendants (e.g. a prefork pool)."""
    total = 0.0
    todo = [pid]
    while todo:
        p = todo.pop()
        try:
            total += cpu_seconds(p)
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total


class StealMeter:
    """The share of the machine's CPU time the hypervisor gave to other guests (/proc/stat
    "steal") between start() and stop(). A noisy neighbour slows every process here, and
    thread and process wake-ups most; the report shows it so that runs can be compared."""

    @staticmethod
    def _now() -> tuple[int, int]:
        with open("/proc/stat") as f:
            ticks = [int(v) for v in f.readline().split()[1:9]]  # user nice system idle iowait irq softirq steal
        return ticks[7], sum(ticks)

    def start(self) -> StealMeter:
        self._start = self._now()
        return self

    def stop(self) -> float:
        steal, total = self._now()
        spent = total - self._start[1]
        return round(100 * (steal - self._start[0]) / spent, 1) if spent else 0.0


class CpuMeter:
    """CPU seconds each named process (tree) used between start() and stop(); a name given a
    list of processes gets their sum (e.g. producer processes). This process is metered as
    `own` ("producer"), or left out with own=None (when it only waits for other producers)."""

    def __init__(self, pids: Mapping[str, int | Sequence[int]], own: str | None = "producer") -> None:
        self.pids = {name: [pid] if isinstance(pid, int) else list(pid) for name, pid in pids.items()}
        self.own = own
        self._start: dict[str, float] = {}
        self.used: dict[str, float] = {}

    def _now(self) -> dict[str, float]:
        now = {name: sum(tree_cpu_seconds(pid) for pid in pids) for name, pids in self.pids.items()}
        if self.own is not None:  # this process alone: its children include every other process of the run
            now[self.own] = cpu_seconds(os.getpid())
        return now

    def start(self) -> CpuMeter:
        self._start = self._now()
        return self

    def stop(self) -> dict[str, float]:
        end = self._now()
        self.used = {name: round(end[name] - self._start[name], 2) for name in end}
        return self.used


class RedisCalls:
    """Redis commands run between start() and stop(), and the time Redis spent in them, from
    INFO commandstats (INFO itself left out; a cluster's primaries summed). A script's time
    (evalsha) includes the commands it ran, which are also counted under their own names."""

    def __init__(self, client: redis.Redis | Sequence[redis.Redis]) -> None:
        self.clients = [client] if isinstance(client, redis.Redis) else list(client)
        """One server, or a cluster's primaries (their figures are summed)."""
        self._start: dict[str, tuple[int, int]] = {}

    def _now(self) -> dict[str, tuple[int, int]]:
        out: dict[str, tuple[int, int]] = {}
        for client in self.clients:
            for name, v in client.info("commandstats").items():
                if name != "cmdstat_info":
                    calls, usec = out.get(name.removeprefix("cmdstat_"), (0, 0))
                    out[name.removeprefix("cmdstat_")] = (calls + int(v["calls"]), usec + int(v["usec"]))
        return out

    def start(self) -> RedisCalls:
        self._start = self._now()
        return self

    def per_task(self, n: int) -> dict[str, object]:
        end = self._now()
        zero = (0, 0)
        delta = {name: (c - self._start.get(name, zero)[0], us - self._start.get(name, zero)[1])
                 for name, (c, us) in end.items()}
        ranked = sorted(delta.items(), key=lambda kv: -kv[1][0])
        calls = {name: round(c / n, 2) for name, (c, _) in ranked if c}
        usec = {name: round(us / n, 2) for name, (c, us) in ranked if c}
        return {"redis_calls_per_task": calls, "redis_calls_per_task_total": round(sum(calls.values()), 2),
                "redis_usec_per_task": usec}


def cpu_fields(cpu: dict[str, float], n: int) -> dict[str, object]:
    """CPU seconds per process over a timed part, and CPU milliseconds per task (and their sum)."""
    return {"cpu_s": cpu, "cpu_ms_per_task": {name: round(1000 * sec / n, 3) for name, sec in cpu.items()},
            "cpu_ms_per_task_total": round(1000 * sum(cpu.values()) / n, 3)}


def rss_mib(pid: int) -> float:
    """Resident set size of a process, in MiB."""
    resident = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
    return resident * PAGE_SIZE / (1024 * 1024)


def cpu_percent(pid: int, seconds: float) -> float:
    """Percent of one core the process used over the next `seconds` (100 = one full core)."""
    c0, t0 = cpu_seconds(pid), time.monotonic()
    time.sleep(seconds)
    c1, t1 = cpu_seconds(pid), time.monotonic()
    return 100.0 * (c1 - c0) / (t1 - t0)


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) by the nearest-rank method."""
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def redis_round_trip_us(client: redis.Redis, n: int) -> float:
    """p50 microseconds of n PINGs sent one at a time (after as many untimed): the least any
    call that waits for one Redis reply can take on this machine."""
    samples = []
    for timed in (False, True):
        for _ in range(n):
            t0 = time.perf_counter()
            client.ping()
            if timed:
                samples.append(time.perf_counter() - t0)
    return 1e6 * percentile(samples, 50)


def redis_used_memory(client: redis.Redis) -> int:
    return int(client.info("memory")["used_memory"])


def unlimited_pubsub_buffers(client: redis.Redis) -> None:
    """A benchmark listener may fall behind for a moment; Redis must not drop it for that."""
    client.config_set("client-output-buffer-limit", "pubsub 0 0 0")


class Completions:
    """Counts completion messages on Redis pub/sub in a child process (bench/listener.py), so
    parsing them takes no time from the producer in this process.

    `channel` is subscribed as a pattern when it contains '*' ('' for none); `shards` are
    (url, channel) pairs of Redis Cluster shard channels, each SSUBSCRIBEd on the node at its
    url. The task id is the payload, or with `strip` the channel name minus that prefix (Celery).
    Times are time.monotonic(), which every process on the machine shares; `channels` counts the
    messages by the channel they came on.
    """

    def __init__(self, url: str, channel: str, expect: int, timeout: float, work_dir: Path, strip: str = "",
                 shards: Sequence[tuple[str, str]] = ()) -> None:
        self.expect = expect
        self.timeout = timeout
        self._out = work_dir / f"completions-{os.getpid()}-{time.monotonic_ns()}.txt"
        args = [sys.executable, "-m", "bench.listener", url, channel, str(expect), str(timeout), str(self._out)]
        if strip:
            args += ["--strip", strip]
        for shard_url, shard_channel in shards:
            args += ["--shard", shard_url, shard_channel]
        self._proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True, cwd=ROOT,
                                      env={**os.environ, "PYTHONPATH": str(ROOT)})
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline().strip()
        if line != "ready":
            self._proc.kill()
            raise RuntimeError(f"completion listener did not start (said {line!r})")
        self.ids: list[str] = []
        self.times: list[float] = []
        self.channels: collections.Counter[str] = collections.Counter()

    def wait(self) -> Completions:
        """Waits until `expect` completions were seen (TimeoutError if the listener gave up first)."""
        try:
            code = self._proc.wait(self.timeout + 30)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            raise
        for line in self._out.read_text().splitlines():
            at, task_id, channel = line.split(" ")
            self.times.append(float(at))
            self.ids.append(task_id)
            self.channels[channel] += 1
        self._out.unlink(missing_ok=True)
        if code != 0:
            raise TimeoutError(f"only {len(self.ids)} of {self.expect} tasks finished within {self.timeout:.0f}s")
        return self

    def last(self) -> float:
        return self.times[-1]

    def rate_between(self, first: int, last: int) -> float:
        """Completions per second between the first-th and the last-th (1-based) completion."""
        span = self.times[last - 1] - self.times[first - 1]
        return (last - first) / span if span > 0 else float("inf")

    def close(self) -> None:
        if self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait(5)
        self._out.unlink(missing_ok=True)
