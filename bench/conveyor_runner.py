"""Conveyor under the benchmark: a private Redis, a scheduler process and worker processes
(`python -m conveyor_worker bench.tasks:app`), fresh for every scenario; producers use the SDK.

Set-up for 2 cores: one scheduler, WORKERS worker processes of CONCURRENCY slots each (see
__main__ for the defaults). The scheduler is one asyncio process, so a second worker process
would only add a third Python process contending for the same 2 cores.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import hashlib
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from bench import dashboard_pages, grpc_floor, ordinary, work
from bench.common import ROOT, Context, Profiler, start, stop, wait_log
from bench.measure import (
    Completions,
    CpuMeter,
    RedisCalls,
    cpu_fields,
    cpu_percent,
    percentile,
    redis_round_trip_us,
    redis_used_memory,
    rss_mib,
)
from bench.redis_backends import ClusterRedis, SingleRedis
from bench.tasks import make_app
from conveyor import (
    AsyncClient,
    Call,
    Canvas,
    Client,
    SubmitOptions,
    TaskHandle,
    TaskState,
    WorkflowHandle,
    chain,
    chord,
)
from conveyor.cli_token import entry, new_token
from conveyor.common import outcome
from conveyor.serialization import JSON, decode_result
from conveyor.v1 import task_pb2
from conveyor_scheduler.keys import QueueKeys
from conveyor_scheduler.store import Store, script_text
from tests.harness import Proc, free_port, serving, wait_for

QUEUE = "default"  # where unrouted tasks go: the producers set no queue
DEEP_QUEUE = "deep"  # the depth scenario's large queue
IDLE_QUEUE = "bench-idle"  # nobody submits here: the fan_in streams consume it
VERIFY_CONCURRENCY = 200
VERIFY_CHUNK = 5_000
API_SAMPLE = 1_000
LATENCY_WARMUP = 20
FLOOR_CALLS = 2_000
"""Calls timed for each floor of the ordinary path's per-hop budget (gRPC round trips, Redis PINGs)."""
LARGE_WARMUP = 2_000
"""Completions not timed after the workers attach to the large queue (the worker starts cold)."""


class ConveyorRunner:
    name = "conveyor"

    def __init__(self, ctx: Context, workers: int, concurrency: int, prefetch: int, secure: bool = False,
                 backend: SingleRedis | ClusterRedis | None = None, scheduler_args: Sequence[str] = (),
                 name: str | None = None) -> None:
        self.secure = Secure(ctx.work_dir / "tls") if secure else None
        """TLS and a token on every call (the "conveyor-tls" system), else plaintext without tokens."""
        if self.secure is not None:
            self.name = "conveyor-tls"
        if name is not None:
            self.name = name
        self.ctx = ctx
        self.workers = workers
        self.concurrency = concurrency
        self.prefetch = prefetch
        self._owns_backend = backend is None
        self.backend = backend or SingleRedis(ctx.work_dir, "conveyor-redis")
        """Where the state lives: a private redis-server of this runner's own, unless given one
        (the cluster scenario's runners share a server or a cluster, and the caller stops it)."""
        self.scheduler_args = list(scheduler_args)
        """More scheduler options (e.g. --redis-client redis-py), after the runner's own."""
        self.redis = self.backend.client
        self.redis_url = self.backend.url
        self.scheduler: Proc | None = None
        self.worker_procs: list[Proc] = []
        self.target = ""
        self._serial = 0
        self._calls = RedisCalls(self.backend.stats_clients)

    def describe(self) -> dict[str, Any]:
        return {"scheduler": "1 process, default settings except --log-level and --metrics-port (on, on a free "
                             "port; env CONVEYOR_SCHEDULER_METRICS_PORT sets it instead, 0: off)",
                "workers": self.workers, "concurrency": self.concurrency, "prefetch": self.prefetch,
                "task": "bench.add (a plain function: runs in the worker's thread pool)"}

    def close(self) -> None:
        self._stop_all()
        if self._owns_backend:
            self.backend.stop()
        if self.secure is not None:
            self.secure.close()

    # -- processes ----------------------------------------------------------------------

    def _start_scheduler(self, label: str) -> None:
        self._serial += 1
        port = free_port()
        self.target = f"127.0.0.1:{port}"
        # /metrics on, as by default, but on a free port (not 9464: another scheduler may hold it)
        # unless CONVEYOR_SCHEDULER_METRICS_PORT, which the scheduler reads itself, says otherwise.
        metrics = [] if os.environ.get("CONVEYOR_SCHEDULER_METRICS_PORT") else ["--metrics-port", str(free_port())]
        self.scheduler = start(f"{self.name}-{label}-scheduler-{self._serial}", [
            sys.executable, "-m", "conveyor_scheduler", "--redis-url", self.redis_url, "--port", str(port),
            "--log-level", "INFO", *metrics, *(self.secure.scheduler_args if self.secure else []),
            *self.scheduler_args], self.ctx.work_dir)
        sched = self.scheduler
        tls = self.secure.client if self.secure else None
        wait_for(lambda: serving(self.target, tls) or not sched.alive(), 60, what="the scheduler to serve")
        if not sched.alive():
            raise RuntimeError(f"scheduler died:\n{sched.output()[-3000:]}")

    def _start_workers(self, label: str, queue: str = QUEUE, prefetch: int | None = None, pool: str = "threads",
                       concurrency: int | None = None) -> None:
        procs = []
        prefetch = self.prefetch if prefetch is None else prefetch
        for i in range(self.workers):
            self._serial += 1
            procs.append(start(f"{self.name}-{label}-worker-{self._serial}", [
                sys.executable, "-m", "conveyor_worker", "bench.tasks:app", "--scheduler", self.target,
                "--queues", queue, "--concurrency", str(concurrency or self.concurrency), "--prefetch", str(prefetch),
                "--pool", pool, "--worker-id", f"bench-{self._serial}-{i}", "--log-level", "INFO"], self.ctx.work_dir))
        for proc in procs:
            wait_log(proc, " connected to ")
        self.worker_procs += procs

    def _stop_workers(self) -> None:
        for proc in self.worker_procs:
            stop(proc)
        self.worker_procs = []

    def _stop_all(self) -> None:
        self._stop_workers()
        if self.scheduler is not None:
            stop(self.scheduler)
            self.scheduler = None
        self.backend.flushall()

    def _pids(self) -> dict[str, int]:
        assert self.scheduler is not None
        pids = {"scheduler": self.scheduler.popen.pid}
        if self.worker_procs:
            pids["worker"] = self.worker_procs[0].popen.pid
        return pids

    def _completions(self, n: int, queues: Sequence[str] = (QUEUE,)) -> Completions:
        """A listener that counts the next n completions of tasks of `queues` (cv:done on one
        server; on a cluster, each queue's shard channel on its primary, and cv:done)."""
        url, channel, shards = self.backend.completions(queues)
        return Completions(url, channel, n, self.ctx.sizes.timeout, self.ctx.work_dir, shards=shards)

    def _meter(self, producers: list[int] | None = None) -> CpuMeter:
        """CPU of the scheduler, the workers, Redis and this producer process, or with
        `producers`, those producer processes (summed) instead of this one."""
        assert self.scheduler is not None
        pids: dict[str, int | list[int]] = {"scheduler": self.scheduler.popen.pid, **self.backend.pids()}
        pids.update((f"worker{i}" if i else "worker", p.popen.pid) for i, p in enumerate(self.worker_procs))
        if producers is not None:
            pids["producers"] = producers
        self._calls = RedisCalls(self.backend.stats_clients).start()
        return CpuMeter(pids, own=None if producers is not None else "producer").start()

    def _fresh(self, label: str, workers: bool = True, queue: str = QUEUE, prefetch: int | None = None,
               pool: str = "threads", concurrency: int | None = None) -> None:
        self._stop_all()
        self._start_scheduler(label)
        if workers:
            self._start_workers(label, queue, prefetch, pool, concurrency)
            self._warm_up(queue)

    def _warm_up(self, queues: str = QUEUE) -> None:
        """Tasks through the fresh workers (of `queues`, comma-separated: spread over them), untimed."""
        names = queues.split(",")

        def call(i: int) -> Call:  # the default queue as the scenarios submit to it: unrouted
            name = names[i % len(names)]
            return Call("bench.add", [i, i], options=SubmitOptions(queue=None if name == QUEUE else name))

        with Client(self.target) as client:
            handles = client.submit_many([call(i) for i in range(self.ctx.sizes.warmup)])
            wrong = asyncio.run(_wrong(self.target, {h.id: 2 * i for i, h in enumerate(handles)}))
        if wrong:
            raise RuntimeError(f"warm-up: {len(wrong)} of {len(handles)} results were wrong")

    def _verify_stored(self, expected: dict[str, Any], queue: str = QUEUE) -> int:
        """How many tasks ended SUCCEEDED with exactly the expected result.

        Read from the task records in Redis (pipelined HMGETs: GetResult one by one would take
        longer than the scenario itself), and a random sample of them, plus any not finished
        yet (waited for), through the SDK's GetResult; a task wrong by either is not verified.
        """
        keys = QueueKeys.of(queue)
        ids = list(expected)
        wrong: set[str] = set()
        unfinished: list[str] = []
        for first in range(0, len(ids), VERIFY_CHUNK):
            chunk = ids[first:first + VERIFY_CHUNK]
            pipe = self.redis.pipeline(transaction=False)
            for task_id in chunk:
                pipe.hmget(keys.task(task_id), "st", "r", "rc")
            for task_id, (state, data, ctype) in zip(chunk, pipe.execute(), strict=True):
                if state is not None and not TaskState(int(state)).terminal:
                    unfinished.append(task_id)  # waited for below
                elif (state is None or int(state) != TaskState.SUCCEEDED
                        or decode_result(data or b"", (ctype or b"").decode() or JSON) != expected[task_id]):
                    wrong.add(task_id)
        sample = {*random.sample(ids, min(API_SAMPLE, len(ids))), *unfinished}
        wrong |= asyncio.run(_wrong(self.target, {tid: expected[tid] for tid in sample}))
        return len(ids) - len(wrong)

    # -- scenarios ----------------------------------------------------------------------

    def single_producer(self, n: int) -> dict[str, Any]:
        """One thread: n submits, one call each; then every result through the SDK."""
        self._fresh("single_producer")
        with Client(self.target) as client, Profiler(self.ctx, f"single_producer-{self.name}", self._pids()) as prof:
            meter = self._meter()
            t0 = time.monotonic()
            ids = [client.submit("bench.add", [i, i]).id for i in range(n)]
            t1 = time.monotonic()
            values = client.results(ids, timeout=600)  # GetResults: batched, like Celery's get_many
            t2 = time.monotonic()
            cpu, calls = meter.stop(), self._calls.per_task(n)
            # The same with send(): each call returns at once, the answers are merged on the stream;
            # "enqueued" once flush() has every task confirmed stored.
            t3 = time.monotonic()
            handles = [client.send("bench.add", [i, i]) for i in range(n)]
            client.flush(timeout=600)
            t4 = time.monotonic()
            sent = client.results(handles, timeout=600)
            t5 = time.monotonic()
        verified = sum(1 for got in (values, sent) for i, v in enumerate(got) if v == 2 * i)
        return {"throughput": n / (t2 - t0), "enqueue_rate": n / (t1 - t0), "tasks": 2 * n, "verified": verified,
                "send_throughput": n / (t5 - t3), "send_enqueue_rate": n / (t4 - t3),
                **cpu_fields(cpu, n), **calls, **_profile(prof), **({} if self.secure else grpc_floor.measure(n))}

    def batch(self, n: int, batch_size: int, queues: Sequence[str] = (), fresh: bool = True) -> dict[str, Any]:
        """submit_many in batches; done when every task's completion is recorded; then verified.
        With `queues`, task i goes to queues[i % len(queues)] (each batch carries them all) and
        the workers consume all of them; else every task goes unrouted to `default`. With
        fresh=False, on the scheduler and workers the caller started (on those queues)."""
        if not queues:
            if fresh:
                self._fresh("batch")
            return self._batch("batch", n, batch_size, lambda i: Call("bench.add", [i, i]), lambda i: 2 * i)
        if fresh:
            self._fresh("batch", queue=",".join(queues))

        def call(i: int) -> Call:
            return Call("bench.add", [i, i], options=SubmitOptions(queue=queues[i % len(queues)]))

        return self._batch("batch", n, batch_size, call, lambda i: 2 * i, queues)

    def _batch(self, label: str, n: int, batch_size: int, call: Callable[[int], Call],
               expect: Callable[[int], Any], queues: Sequence[str] = (QUEUE,)) -> dict[str, Any]:
        """Tasks call(0..n-1) of `queues`, submitted in batches, timed until every completion is
        recorded; then each result is checked against expect(i)."""
        done = self._completions(n, queues)
        try:
            expected: dict[str, dict[str, Any]] = {queue: {} for queue in queues}
            with Client(self.target) as client, Profiler(self.ctx, f"{label}-{self.name}", self._pids()) as prof:
                meter = self._meter()
                t0 = time.monotonic()
                for first in range(0, n, batch_size):
                    handles = client.submit_many([call(i) for i in range(first, min(first + batch_size, n))])
                    for k, h in enumerate(handles):
                        expected[h.queue][h.id] = expect(first + k)
                t1 = time.monotonic()
                done.wait()
                cpu, calls = meter.stop(), self._calls.per_task(n)
        finally:
            done.close()
        verified = sum(self._verify_stored(tasks, queue) for queue, tasks in expected.items())
        unexpected = len(set(done.ids).difference(*expected.values()))
        return {"throughput": n / (done.last() - t0), "enqueue_rate": n / (t1 - t0), "batch_size": batch_size,
                "seconds": done.last() - t0, "tasks": n, "verified": verified - unexpected,
                "done_channels": dict(done.channels), **cpu_fields(cpu, n), **calls, **_profile(prof)}

    def cpu_bound(self, n: int, noop: int, children: int) -> dict[str, Any]:
        """bench.burn (about 20 ms of pure Python) on a worker of `children` slots, first in
        threads, then in child processes; then no-op tasks through the children (the pool's
        own overhead per task)."""
        size = work.burn_size()
        out: dict[str, Any] = {"burn_n": size, "children": children, "tasks": 0, "verified": 0}
        runs = {
            "threads": (n, lambda i: Call("bench.burn", [size + i % work.VARIANTS]),
                        lambda i: work.expected(i % work.VARIANTS)),
            "processes": (n, lambda i: Call("bench.burn", [size + i % work.VARIANTS]),
                          lambda i: work.expected(i % work.VARIANTS)),
            "noop_processes": (noop, lambda i: Call("bench.add", [i, i]), lambda i: 2 * i),
        }
        for name, (count, call, expect) in runs.items():
            pool = "threads" if name == "threads" else "processes"
            self._fresh(f"cpu_bound-{name}", pool=pool, concurrency=children)
            res = self._batch(f"cpu_bound-{name}", count, min(count, 500), call, expect)
            out[f"{name}_throughput"] = res["throughput"]
            out[f"{name}_cpu_ms_per_task"] = res["cpu_ms_per_task"]
            out["tasks"] += res["tasks"]
            out["verified"] += res["verified"]
        out["throughput"] = out["processes_throughput"]
        out["speedup"] = out["processes_throughput"] / out["threads_throughput"]
        return out

    def latency(self, n: int) -> dict[str, Any]:
        """Sequential submit-then-wait round trips on idle workers: `client.run` (Submit with
        wait_results: one call), and for comparison submit() then handle.result() (two calls)."""
        self._fresh("latency")
        samples: list[float] = []
        two_calls: list[float] = []
        verified = 0
        with Client(self.target) as client, Profiler(self.ctx, f"latency-{self.name}", self._pids()) as prof:
            for i in range(LATENCY_WARMUP):  # this client's first round trips are not timed
                client.run("bench.add", [i, i], timeout=30)
                client.submit("bench.add", [i, i]).result(timeout=30)
            meter = self._meter()
            for i in range(n):
                t0 = time.perf_counter()
                value = client.run("bench.add", [i, i], timeout=30)
                samples.append(time.perf_counter() - t0)
                verified += value == 2 * i
            cpu, calls = meter.stop(), self._calls.per_task(n)
            for i in range(n // 3):
                t0 = time.perf_counter()
                value = client.submit("bench.add", [i, i]).result(timeout=30)
                two_calls.append(time.perf_counter() - t0)
                verified += value == 2 * i
        return {"p50_ms": 1000 * percentile(samples, 50), "p99_ms": 1000 * percentile(samples, 99),
                "mean_ms": 1000 * sum(samples) / n, "two_calls_p50_ms": 1000 * percentile(two_calls, 50),
                "two_calls_p99_ms": 1000 * percentile(two_calls, 99),
                "tasks": n + n // 3, "verified": verified, **cpu_fields(cpu, n), **calls, **_profile(prof)}

    def ordinary(self, n: int, send: bool = True, floors: bool = True, fresh: bool = True) -> dict[str, Any]:
        """One thread, as a web application calls: `add.submit(i, i)` one at a time, then each
        `handle.result()` in order; then (`send`) the same with `add.send(i, i)`. Then (`floors`)
        the floors of the per-hop budget: a no-op gRPC server's round trips and a Redis PING's.
        With fresh=False, on the scheduler and workers the caller started."""
        if fresh:
            self._fresh("ordinary")
        producer = ConveyorProducer(self.target, self.ctx.sizes.timeout)
        try:
            with Profiler(self.ctx, f"ordinary-{self.name}", {**self._pids(), "producer": os.getpid()}) as prof:
                ordinary.warm_up(producer, LATENCY_WARMUP)
                meter = self._meter()
                run = ordinary.one_at_a_time(producer.submit, producer.result, range(n))
                cpu, calls = meter.stop(), self._calls.per_task(n)
                sent = ordinary.one_at_a_time(producer.send, producer.result, range(n)) if send else None
        finally:
            producer.close()
        out = {**run.fields(), "tasks": n, "verified": run.verified}
        if sent is not None:
            out.update({**sent.fields("send_"), "tasks": 2 * n, "verified": run.verified + sent.verified})
        if floors and not self.secure:
            out.update({**grpc_floor.measure(min(n, FLOOR_CALLS)),
                        "redis_ping_p50_us": redis_round_trip_us(self.redis, FLOOR_CALLS)})
        return {**out, **cpu_fields(cpu, n), **calls, **_profile(prof)}

    def cluster(self, batch_n: int, batch_size: int, ordinary_n: int, passes: int, micro_calls: int,
                micro_rounds: int) -> dict[str, Any]:
        """One Redis vs a Redis Cluster, through each hot-path client (bench/cluster.py)."""
        from bench import cluster  # noqa: PLC0415 - it builds runners of this class

        return cluster.run(self, batch_n, batch_size, ordinary_n, passes, micro_calls, micro_rounds)

    def many_producers(self, n: int, producers: int) -> dict[str, Any]:
        """`producers` processes, each its own client, each submit() one at a time then result()
        for its n/producers tasks, released together; one scheduler replica serves them all."""
        self._fresh("many_producers")
        make = functools.partial(ConveyorProducer, self.target, self.ctx.sizes.timeout)
        with Profiler(self.ctx, f"many_producers-{self.name}", self._pids()) as prof:
            run, cpu = ordinary.run_producers(make, producers, n // producers, self._meter, LATENCY_WARMUP,
                                              self.ctx.sizes.timeout)
        tasks = len(run.numbers)
        return {**run.fields(), "producers": producers, "tasks": tasks, "verified": run.verified,
                **cpu_fields(cpu, tasks), **self._calls.per_task(tasks), **_profile(prof)}

    def depth(self, small: int, large: int, rounds: int, push_batch: int) -> dict[str, Any]:
        """Dispatch rate with `small` vs `large` tasks queued, Redis bytes per queued task, scheduler RSS.

        Two queues, one worker each: `default` gets `small` tasks per round, `deep` holds `large`.
        The depths are timed in alternation, so a change in the machine's other load hits both
        alike, with the same mechanics: the queue's worker, paused (SIGSTOP) meanwhile, is resumed
        and `timed` completions after its first `skip` are timed; the other worker stays paused.
        """
        # Workers without prefetch: every timed task is claimed from Redis at its depth (leases
        # prefetched while a worker is paused would be served from its memory instead).
        self._fresh("depth", prefetch=0)  # worker A on `default`, warmed up
        sched = self.scheduler
        assert sched is not None
        skip = small // 10
        timed = small - 2 * skip  # a small round's middle: the queue never runs dry inside it
        verified = total = 0

        # The scheduler first handles two `push_batch` calls at once, as the large push makes them,
        # so its RSS at the small depth already includes that request size's high-water mark.
        rss_start = rss_mib(sched.popen.pid)
        warm = asyncio.run(_push(self.target, min(2 * push_batch, large), push_batch))
        verified += self._verify_stored({tid: tid for tid in warm})
        total += len(warm)

        # Memory: nothing queued on `deep` -> `small` queued -> `large` queued (nobody consumes it yet).
        mem0 = redis_used_memory(self.redis)
        queued = asyncio.run(_push(self.target, small, push_batch, queue=DEEP_QUEUE))
        time.sleep(0.5)
        rss_small = rss_mib(sched.popen.pid)
        t0 = time.monotonic()
        queued += asyncio.run(_push(self.target, large - small, push_batch, queue=DEEP_QUEUE))
        push_rate = (large - small) / (time.monotonic() - t0)
        mem_large = redis_used_memory(self.redis)
        # What the operations surface adds to a queued task: its share of the task index (one stream
        # entry per submit call). The activity buckets are per queue and 10 s, not per task.
        index_bytes = int(self.redis.memory_usage(QueueKeys.of(DEEP_QUEUE).prefix + "x", samples=0) or 0)
        time.sleep(0.5)
        rss_large = rss_mib(sched.popen.pid)
        deep_ids = set(queued)
        del queued
        # From here on, Redis' slow log keeps every command of 1 ms or more with its own execution
        # time: the longest one (a claim, an index trimming pass, a purge step) is how long Redis was
        # blocked, which a busy machine does not stretch as it stretches a PING's round trip.
        self.redis.config_set("slowlog-log-slower-than", 1000)
        self.redis.slowlog_reset()

        # Worker B on `deep`: warm it up (untimed), then alternate deep stretches and small rounds.
        warm_up = max(skip, min(LARGE_WARMUP, large // 4))
        done = self._completions(warm_up)
        try:
            self._start_workers("depth-deep", queue=DEEP_QUEUE, prefetch=0)
            done.wait()
        finally:
            done.close()
        shallow, deep = self.worker_procs[0], self.worker_procs[-1]
        deep_seen = list(done.ids)
        spans_small: list[float] = []
        spans_large: list[float] = []
        cpu_small: collections.Counter[str] = collections.Counter()
        cpu_large: collections.Counter[str] = collections.Counter()
        pids = {"scheduler": sched.popen.pid, **self.backend.pids()}
        deep_list = QueueKeys.of(DEEP_QUEUE).ready[0]  # priority 0: every deep task is there
        try:
            deep.popen.send_signal(signal.SIGSTOP)
            left_before = int(self.redis.llen(deep_list))
            for _ in range(rounds):
                # The same mechanics at both depths: a paused worker is resumed on a queue that holds
                # at least `small` tasks, and completions skip+1 .. skip+timed are timed.
                shallow.popen.send_signal(signal.SIGSTOP)
                ids = asyncio.run(_push(self.target, small, push_batch))
                done = self._completions(small)
                meter = CpuMeter({**pids, "worker": shallow.popen.pid}).start()
                try:
                    shallow.popen.send_signal(signal.SIGCONT)
                    done.wait()
                finally:
                    done.close()
                cpu_small.update(meter.stop())
                spans_small.append(done.times[skip + timed - 1] - done.times[skip - 1])
                verified += self._verify_stored({tid: tid for tid in ids})
                total += small
                done = self._completions(skip + timed)
                meter = CpuMeter({**pids, "worker": deep.popen.pid}).start()
                try:
                    deep.popen.send_signal(signal.SIGCONT)
                    done.wait()
                finally:
                    deep.popen.send_signal(signal.SIGSTOP)
                    done.close()
                cpu_large.update(meter.stop())
                spans_large.append(done.times[skip + timed - 1] - done.times[skip - 1])
                deep_seen += done.ids
            deep_claimed = left_before - int(self.redis.llen(deep_list))  # tasks the metered stretches took
        finally:
            for proc in (shallow, deep):
                proc.popen.send_signal(signal.SIGCONT)
        self._stop_workers()
        verified += self._verify_stored({tid: tid for tid in deep_seen if tid in deep_ids}, DEEP_QUEUE)
        verified -= sum(1 for tid in deep_seen if tid not in deep_ids)  # a completion we never submitted
        total += len(deep_seen)
        purge = self._purge_timed(DEEP_QUEUE, int(self.redis.llen(deep_list)))
        slow = max(self.redis.slowlog_get(1000), key=lambda e: e["duration"], default=None)
        self.redis.config_set("slowlog-log-slower-than", 10_000)
        longest = {"longest_command_ms": slow["duration"] / 1000 if slow else 0.0,
                   "longest_command": _command_text(slow["command"]) if slow else ""}
        return {**purge, **longest,
                "rate_1k": rounds * timed / sum(spans_small), "rate_1m": rounds * timed / sum(spans_large),
                "redis_bytes_per_task": (mem_large - mem0) / large, "index_bytes_per_task": index_bytes / large,
                "rss_mib_1k": rss_small, "rss_mib_1m": rss_large, "rss_mib_fresh": rss_start,
                "depth_small": small, "depth_large": large, "push_rate": push_rate,
                "timed_tasks_per_depth": rounds * timed,
                "cpu_ms_per_task_1k": _per_task(cpu_small, rounds * small),
                "cpu_ms_per_task_1m": _per_task(cpu_large, deep_claimed),
                "tasks": total, "verified": verified}

    def workflows(self, n: int, steps: int, rounds: int, small: int) -> dict[str, Any]:
        """A chord of `n` add(i, i) headers into bench.tsum and a chain of `steps` adds, submitted
        through the SDK (`chord(...)`, `add.s(0, 1) | add.s(1) | ...`); every node's result verified.

        1. Redis bytes per node: used_memory before the chord is submitted and once it is stored
           (headers queued, the callback waiting) with no worker connected; then workers start
           and it runs (untimed).
        2. `rounds` chords on warm workers, each timed from its submit to the callback's
           completion on cv:done (an outside listener, as in batch: nobody watches the workflow
           meanwhile). The last header's ack is the greatest finished_at of the header tasks (the
           scheduler sets it as it records the ack); the callback's start is the time.time()
           bench.tsum takes first (in its result); between them, the callback's created_at (the
           scheduler's advance submitted it) and started_at (leased to the worker).
        3. The chain, timed the same way: steps per second.
        4. The same waited for as an application does, with handle.result() (WatchWorkflow): the
           chain again, and a chord of `small` headers timed with and without it.
        """
        self._fresh("workflows")
        app = make_app(self.target)
        add, tsum = app.tasks["bench.add"], app.tasks["bench.tsum"]

        def chord_of(size: int) -> Canvas:
            return chord([add.s(i, i) for i in range(size)], tsum.s())

        def chain_of(size: int) -> Canvas:
            return chain(add.s(0, 1), *(add.s(1) for _ in range(size - 1)))

        timeout = self.ctx.sizes.timeout
        out: dict[str, Any] = {"chord_size": n, "chain_size": steps, "rounds": rounds, "small_chord_size": small}
        tasks = verified = 0
        try:
            with Client(self.target, timeout=300) as client:
                self._stop_workers()  # stored, not run
                canvas = chord_of(n)
                mem0 = redis_used_memory(self.redis)
                handle = client.submit_workflow(canvas)
                time.sleep(0.2)
                out["redis_bytes_per_node"] = (redis_used_memory(self.redis) - mem0) / (n + 1)
                done = self._completions(n + 1)
                try:
                    self._start_workers("workflows")
                    done.wait()  # then result() reads it finished: a watcher all along would slow it (see 4.)
                finally:
                    done.close()
                right, cold = self._chord_outcome(client, handle, n, handle.result(timeout=timeout))
                tasks, verified = tasks + n + 1, verified + right

                with Profiler(self.ctx, f"workflows-{self.name}", self._pids()) as prof:
                    meter = self._meter()
                    runs = [self._timed_workflow(client, chord_of(n), n + 1) for _ in range(rounds)]
                    cpu, calls = meter.stop(), self._calls.per_task(rounds * (n + 1))
                samples = []
                for took, handle, value in runs:
                    right, got = self._chord_outcome(client, handle, n, value)
                    tasks, verified = tasks + n + 1, verified + right
                    samples.append({**got, "seconds": took})

                meter = self._meter()
                chain_took, handle, value = self._timed_workflow(client, chain_of(steps), steps)
                chain_cpu = meter.stop()
                tasks, verified = tasks + steps, verified + self._chain_verified(client, handle, steps, value)
                watched_took, handle, value = self._timed_workflow(client, chain_of(steps), steps, watch=True)
                tasks, verified = tasks + steps, verified + self._chain_verified(client, handle, steps, value)

                for watch in (False, True):
                    took, handle, value = self._timed_workflow(client, chord_of(small), small + 1, watch)
                    right, _ = self._chord_outcome(client, handle, small, value)
                    tasks, verified = tasks + small + 1, verified + right
                    out["small_chord_result_seconds" if watch else "small_chord_seconds"] = took
        finally:
            app.client.close()

        def p50(key: str) -> float:
            return percentile([s[key] for s in samples], 50)

        for key in ("ack_to_callback_ms", "ack_to_release_ms", "ack_to_lease_ms", "seconds"):
            out[f"chord_{key}_samples"] = [round(s[key], 4) for s in samples]
        out.update({
            "chord_ack_to_callback_ms": p50("ack_to_callback_ms"),
            "chord_ack_to_callback_max_ms": max(s["ack_to_callback_ms"] for s in samples),
            "chord_ack_to_release_ms": p50("ack_to_release_ms"), "chord_ack_to_lease_ms": p50("ack_to_lease_ms"),
            "chord_seconds": p50("seconds"), "chord_nodes_per_s": (n + 1) / p50("seconds"),
            "cold_chord_ack_to_callback_ms": cold["ack_to_callback_ms"],
            "chain_seconds": chain_took, "chain_steps_per_s": steps / chain_took,
            "chain_result_steps_per_s": steps / watched_took,
            "chain_cpu_ms_per_step_total": round(1000 * sum(chain_cpu.values()) / steps, 3),
            "tasks": tasks, "verified": verified,
            **cpu_fields(cpu, rounds * (n + 1)), **calls, **_profile(prof)})
        return out

    def _timed_workflow(self, client: Client, canvas: Canvas, nodes: int, watch: bool = False
                        ) -> tuple[float, WorkflowHandle, Any]:
        """(seconds, handle, result) of one workflow of `nodes` tasks on idle workers: from its
        submit to its last task's completion on cv:done, or with `watch`, to handle.result()'s
        return (it follows the workflow on WatchWorkflow from the submit on)."""
        done = self._completions(nodes)
        try:
            t0 = time.monotonic()
            handle = client.submit_workflow(canvas)
            if watch:
                value = handle.result(timeout=self.ctx.sizes.timeout)
                end = time.monotonic()
                done.wait()
            else:
                end = done.wait().last()
                value = handle.result(timeout=self.ctx.sizes.timeout)
        finally:
            done.close()
        return end - t0, handle, value

    def _chord_outcome(self, client: Client, handle: WorkflowHandle, n: int, value: Any
                       ) -> tuple[int, dict[str, float]]:
        """How many of a finished chord's n + 1 nodes verified (every header's result read through
        the SDK, the callback's sum), and its ack -> callback figures (see workflows)."""
        nodes = handle.get().nodes
        header_ids, callback_id = [node.task_id for node in nodes[:n]], nodes[n].task_id
        results = client.results(header_ids, timeout=self.ctx.sizes.timeout)
        right = sum(1 for i, v in enumerate(results) if v == 2 * i)
        right += int(isinstance(value, dict) and value.get("sum") == n * (n - 1))
        # Every header's finished_at from the task records (n GetTask calls would take seconds);
        # the last one's is read through GetTask too, and must agree.
        keys = QueueKeys.of(QUEUE)
        pipe = self.redis.pipeline(transaction=False)
        for task_id in header_ids:
            pipe.hget(keys.task(task_id), "fa")
        finished = [int(fa) for fa in pipe.execute()]
        last = max(range(n), key=finished.__getitem__)
        last_ms = client.get_task(header_ids[last]).finished_at.ToMilliseconds()
        if last_ms != finished[last]:
            raise RuntimeError(f"header {header_ids[last]}: finished_at {last_ms} by GetTask, {finished[last]} stored")
        callback = client.get_task(callback_id)
        started = 1000 * float(value["started"]) if isinstance(value, dict) else float("nan")
        return right, {"ack_to_callback_ms": started - last_ms,
                       "ack_to_release_ms": callback.created_at.ToMilliseconds() - last_ms,
                       "ack_to_lease_ms": callback.started_at.ToMilliseconds() - last_ms}

    def _chain_verified(self, client: Client, handle: WorkflowHandle, steps: int, value: Any) -> int:
        """How many of a chain's steps verified: step i's result is i + 1, the chain's is `steps`."""
        values = client.results([node.task_id for node in handle.get().nodes], timeout=self.ctx.sizes.timeout)
        return sum(1 for i, v in enumerate(values) if v == i + 1) if value == steps else 0

    def _purge_timed(self, queue: str, queued: int) -> dict[str, Any]:
        """PurgeQueue on the `queued` tasks left in `queue`, timed, with Redis PINGed without pause
        meanwhile: the worst PING shows how long one purge step blocks Redis."""
        result: dict[str, int] = {}

        def purge() -> None:  # as an operator does: the SDK's call (what `conveyor queue purge` makes)
            with Client(self.target, timeout=600) as client:
                result["purged"] = client.admin.purge_queue(queue)

        thread = threading.Thread(target=purge)
        worst = 0.0
        t0 = time.monotonic()
        thread.start()
        while thread.is_alive():
            p0 = time.perf_counter()
            self.redis.ping()
            worst = max(worst, time.perf_counter() - p0)
        thread.join()
        took = time.monotonic() - t0
        left = sum(int(self.redis.llen(key)) for key in QueueKeys.of(queue).ready)
        assert result.get("purged") == queued and left == 0, (result, queued)
        return {"purge_tasks": queued, "purge_seconds": took, "purge_worst_ping_ms": worst * 1000}

    def dashboard(self, tasks: int, push_batch: int, requests: int, streams: int, seconds: float) -> dict[str, Any]:
        """The web dashboard in front of this scheduler with `tasks` queued on DEEP_QUEUE (nobody
        consumes them): each page's p95 and its CPU with `streams` open overview streams."""
        self._fresh("dashboard", prefetch=0)  # a worker on `default`: the workers page has a row
        queued = asyncio.run(_push(self.target, tasks, push_batch, queue=DEEP_QUEUE))
        with Client(self.target) as client:
            stored = client.admin.queues(DEEP_QUEUE)[0].queued
        proc, res = dashboard_pages.measure(self.target, self.ctx.work_dir, DEEP_QUEUE, queued[len(queued) // 2],
                                            requests, streams, seconds)
        stop(proc.proc)
        # Every pushed task is stored and still queued: the pages were timed at full depth.
        return {**res, "depth": stored, "tasks": len(queued), "verified": stored if stored == len(queued) else 0}

    def fan_in(self, count: int, seconds: float) -> dict[str, Any]:
        """`count` idle workers' streams on one scheduler: its CPU and RSS."""
        self._fresh("fan_in", workers=False)
        sched = self.scheduler
        assert sched is not None
        time.sleep(1.0)
        pid = sched.popen.pid
        baseline = cpu_percent(pid, seconds)
        rss0 = rss_mib(pid)
        idle = subprocess.Popen([sys.executable, "-m", "bench.idle_workers", self.target, str(count), IDLE_QUEUE],
                                stdout=subprocess.PIPE, text=True, cwd=ROOT,
                                env={**os.environ, "PYTHONPATH": str(ROOT)})
        try:
            assert idle.stdout is not None
            line = idle.stdout.readline().strip()
            if line != f"ready {count}":
                raise RuntimeError(f"idle workers did not connect (said {line!r})")
            time.sleep(1.0)  # let the connect burst settle
            cpu = cpu_percent(pid, seconds)
            rss = rss_mib(pid)
            still = idle.poll() is None
        finally:
            idle.kill()
            idle.wait(10)
        return {"cpu_pct": cpu, "rss_mib": rss, "baseline_cpu_pct": baseline, "baseline_rss_mib": rss0,
                "workers": count, "seconds": seconds, "tasks": count, "verified": count if still else 0}


# -- SDK helpers (asyncio, so waits and checks overlap) ------------------------------------

async def _pool(items: Iterable[Any], fn: Any, concurrency: int = VERIFY_CONCURRENCY) -> None:
    it = iter(items)

    async def runner() -> None:
        for item in it:
            await fn(item)

    await asyncio.gather(*(runner() for _ in range(concurrency)))


async def _wrong(target: str, expected: dict[str, Any]) -> set[str]:
    """The tasks that did not end SUCCEEDED with exactly the expected result (read with GetResult)."""
    wrong: set[str] = set()
    async with AsyncClient(target) as client:
        async def one(item: tuple[str, Any]) -> None:
            task_id, want = item
            resp = await client.wait(task_id, timeout=600)
            if TaskState(resp.state) is not TaskState.SUCCEEDED or outcome(resp) != want:
                wrong.add(task_id)
        await _pool(expected.items(), one)
    return wrong


async def _push(target: str, n: int, batch: int, in_flight: int = 2, queue: str = "") -> list[str]:
    """Submits n payload-less bench.whoami tasks in batches, `in_flight` calls at a time."""
    spec = task_pb2.TaskSpec(name="bench.whoami", queue=queue)  # no payload; no queue: routed to QUEUE
    ids: list[list[str]] = [[] for _ in range(0, n, batch)]
    async with AsyncClient(target, timeout=300) as client:
        async def one(index: int) -> None:
            size = min(batch, n - index * batch)
            ids[index] = [h.id for h in await client.submit_many([spec] * size)]
        await _pool(range(len(ids)), one, in_flight)
    return [tid for chunk in ids for tid in chunk]


class ConveyorProducer:
    """A web application's producer: the benchmark's app bound to this run's scheduler, its
    task called as `add.submit(i, i)` (or `add.send(i, i)`), results read with `handle.result()`."""

    def __init__(self, target: str, timeout: float) -> None:
        self.app = make_app(target)
        self.add = self.app.tasks["bench.add"]
        self.timeout = timeout

    def submit(self, i: int) -> TaskHandle[Any]:
        return self.add.submit(i, i)

    def send(self, i: int) -> TaskHandle[Any]:
        return self.add.send(i, i)

    def result(self, handle: TaskHandle[Any]) -> Any:
        return handle.result(timeout=self.timeout)

    def close(self) -> None:
        self.app.client.close()


class Secure:
    """TLS (a CA made here with trustme) and a token on every call. The token and the CA reach the
    producer's clients and the worker processes the way users set them: CONVEYOR_TOKEN and
    CONVEYOR_TLS_CA, set in this process's environment until close()."""

    ENV = ("CONVEYOR_TOKEN", "CONVEYOR_TLS_CA")

    def __init__(self, directory: Path) -> None:
        from tests.tls_files import Authority  # noqa: PLC0415 - trustme: a dev requirement, only for this system

        ca = Authority(directory)
        pair = ca.issue("scheduler")
        self.client = ca.client()
        secret = new_token()
        auth = directory / "tokens.toml"
        auth.write_text(entry("bench", secret, ["admin"], None) + "\n")
        self.scheduler_args = ["--tls-cert", str(pair.cert), "--tls-key", str(pair.key), "--auth-file", str(auth)]
        self._saved = {name: os.environ.get(name) for name in self.ENV}
        os.environ.update({"CONVEYOR_TOKEN": secret, "CONVEYOR_TLS_CA": str(ca.pem)})

    def close(self) -> None:
        for name, value in self._saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _command_text(command: bytes | str) -> str:
    """A slow-log command, with a script named instead of its SHA1 (e.g. "EVALSHA reap.lua")."""
    text = command.decode(errors="replace") if isinstance(command, bytes) else command
    words = text.split()
    if len(words) > 1 and words[0].upper() == "EVALSHA":
        names = {hashlib.sha1(script_text(n).encode()).hexdigest(): n for n in Store.SCRIPTS}
        return f"EVALSHA {names.get(words[1], words[1])}.lua"
    return " ".join(words[:2])


def _per_task(cpu: collections.Counter[str], n: int) -> dict[str, float]:
    return {name: round(1000 * sec / n, 3) for name, sec in cpu.items() if name != "producer"}


def _profile(prof: Profiler) -> dict[str, Any]:
    summaries = prof.summaries()
    return {"profile": summaries} if summaries else {}
