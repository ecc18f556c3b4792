"""Celery 5 under the benchmark: its own private Redis (broker db 0, results db 1), one worker
process (`celery -A bench.celery_app worker`) in the pool that a short calibration found
fastest on this machine, producers in this process. Settings: bench/celery_app.py.
"""

from __future__ import annotations

import datetime as dt
import functools
import importlib.util
import os
import sys
import time
from collections.abc import Callable
from typing import Any

from bench import ordinary, work
from bench.common import Context, private_redis, start, stop
from bench.measure import Completions, CpuMeter, RedisCalls, cpu_fields, percentile, redis_used_memory
from tests.harness import Proc

RESULT_PREFIX = "celery-task-meta-"
VERIFY_CHUNK = 5_000
LATENCY_WARMUP = 20


def available() -> str | None:
    """None when Celery can run here, else why not."""
    if importlib.util.find_spec("celery") is None or importlib.util.find_spec("redis") is None:
        return "celery is not installed (make bench installs bench/requirements.txt)"
    return None


def candidate_pools(quick: bool = False) -> list[tuple[str, int]]:
    """(pool, concurrency) pairs the calibration tries; gevent only where it is installed."""
    cores = os.cpu_count() or 2
    if quick:
        return [("prefork", cores), ("threads", 4), ("solo", 1)]
    pools = [("prefork", cores), ("prefork", 2 * cores), ("threads", 4), ("threads", 16), ("solo", 1)]
    if importlib.util.find_spec("gevent") is not None:
        pools.append(("gevent", 64))
    return pools


def budgeted_batch(n: int, batch_size: int, rate: float, seconds: float) -> int:
    """How many of n batch tasks Celery runs: n, or fewer (whole batches, at least n/5) when
    its calibrated `rate` says n would take longer than `seconds` (rate 0: not calibrated)."""
    if rate <= 0:
        return n
    budget = int(rate * seconds) // batch_size * batch_size
    return min(n, max(budget, n // 5, batch_size))


class CeleryRunner:
    name = "celery"

    def __init__(self, ctx: Context, pool: str | None = None, concurrency: int | None = None) -> None:
        self.ctx = ctx
        self.redis_server, self.redis = private_redis(ctx.work_dir, "celery-redis")
        base = f"redis://127.0.0.1:{self.redis_server.port}"
        os.environ["BENCH_CELERY_REDIS"] = base  # read by bench.celery_app here and in the worker
        from bench.celery_app import make_app  # noqa: PLC0415 - configured from the variable above

        self._make_app = make_app
        self.app: Any = None
        self.add: Any = None
        self._new_app()
        self.results_url = f"{base}/1"
        self.worker: Proc | None = None
        self.pool = pool
        self.concurrency = concurrency
        self.calibration: list[dict[str, Any]] = []
        self._serial = 0
        self._calls = RedisCalls(self.redis)

    def describe(self) -> dict[str, Any]:
        return {"version": _celery_version(), "pool": self.pool, "concurrency": self.concurrency,
                "prefetch_multiplier": self.app.conf.worker_prefetch_multiplier, "calibration": self.calibration,
                "settings": "bench/celery_app.py (acks on receipt, prefetch 64, JSON, no events, "
                            "no gossip/mingle/heartbeat)"}

    def close(self) -> None:
        self._stop_worker()
        _close_app(self.app)
        self.redis_server.stop()

    def _new_app(self) -> None:
        """A fresh producer app: the Redis result consumer of the last scenario (subscribed to every
        task it sent) must not weigh on the next one."""
        if self.app is not None:
            _close_app(self.app)
        self.app = self._make_app()
        self.add = self.app.tasks["bench.add"]

    # -- processes ----------------------------------------------------------------------

    def _start_worker(self, label: str, pool: str, concurrency: int, fresh: bool = True) -> None:
        """A worker on an empty Redis and a new producer app, ready once it answered a task; or,
        with fresh=False, on what Redis holds (e.g. tasks sent while no worker ran), not waited for."""
        self._stop_worker()
        if fresh:
            self.redis.flushall()
            self._new_app()
        self._serial += 1
        self.worker = start(f"{label}-celery-{self._serial}", [
            sys.executable, "-m", "celery", "-A", "bench.celery_app", "worker", f"--pool={pool}",
            f"--concurrency={concurrency}", "--without-gossip", "--without-mingle", "--without-heartbeat",
            "-Q", "bench", "--loglevel=WARNING", "-n", f"bench{self._serial}@%h"], self.ctx.work_dir)
        # Ready once it answers a task.
        if fresh and self.add.delay(1, 2).get(timeout=120) != 3:
            raise RuntimeError("celery worker gave a wrong warm-up result")

    def _stop_worker(self) -> None:
        if self.worker is not None:
            stop(self.worker, timeout=20)
            self.worker = None

    def _meter(self, producers: list[int] | None = None) -> CpuMeter:
        """CPU of the worker (with its pool's processes), Redis and this producer process, or
        with `producers`, those producer processes (summed) instead of this one."""
        assert self.worker is not None and self.redis_server.proc is not None
        pids: dict[str, int | list[int]] = {"worker": self.worker.popen.pid, "redis": self.redis_server.proc.pid}
        if producers is not None:
            pids["producers"] = producers
        self._calls = RedisCalls(self.redis).start()
        return CpuMeter(pids, own=None if producers is not None else "producer").start()

    def _fresh(self, label: str) -> None:
        if self.pool is None or self.concurrency is None:
            self.calibrate()
        assert self.pool is not None and self.concurrency is not None
        self._start_worker(label, self.pool, self.concurrency)
        self._warm_up()

    def _warm_up(self) -> None:
        results = [self.add.delay(i, i) for i in range(self.ctx.sizes.warmup)]
        ok = self._verify({r.id: 2 * i for i, r in enumerate(results)})
        if ok != len(results):
            raise RuntimeError(f"celery warm-up: only {ok} of {len(results)} results were right")

    def calibrate(self) -> None:
        """Tries each pool on a short batch and keeps the fastest."""
        n = self.ctx.sizes.celery_calibration
        best: tuple[float, str, int] | None = None
        for pool, concurrency in candidate_pools(quick=self.ctx.sizes.quick):
            try:
                self._start_worker("calibrate", pool, concurrency)
                self._warm_up()
                rate = self._batch_rate(n, self.ctx.sizes.batch_size)["throughput"]
            except Exception as exc:  # a pool that cannot run here is skipped, and said so
                self.calibration.append({"pool": pool, "concurrency": concurrency, "error": str(exc)[:200]})
                self.ctx.log(f"  celery calibration: {pool} -c {concurrency}: failed ({exc})")
                continue
            finally:
                self._stop_worker()
            self.calibration.append({"pool": pool, "concurrency": concurrency, "throughput": rate})
            self.ctx.log(f"  celery calibration: {pool:8s} -c {concurrency:<3d} {rate:8.0f} tasks/s")
            if best is None or rate > best[0]:
                best = (rate, pool, concurrency)
        if best is None:
            raise RuntimeError("no celery pool could run")
        _, self.pool, self.concurrency = best
        self.ctx.log(f"  celery: using --pool={self.pool} -c {self.concurrency}")

    # -- scenarios ----------------------------------------------------------------------

    def single_producer(self, n: int) -> dict[str, Any]:
        self._fresh("single_producer")
        meter = self._meter()
        t0 = time.monotonic()
        results = [self.add.delay(i, i) for i in range(n)]
        t1 = time.monotonic()
        values = self._results(results)
        t2 = time.monotonic()
        cpu, calls = meter.stop(), self._calls.per_task(n)
        verified = sum(1 for i, v in enumerate(values) if v == 2 * i)
        return {"throughput": n / (t2 - t0), "enqueue_rate": n / (t1 - t0), "tasks": n, "verified": verified,
                **cpu_fields(cpu, n), **calls}

    def batch(self, n: int, batch_size: int) -> dict[str, Any]:
        self._fresh("batch")
        rates = [c["throughput"] for c in self.calibration if "throughput" in c]
        run = budgeted_batch(n, batch_size, max(rates, default=0.0), self.ctx.sizes.celery_batch_seconds)
        res = self._batch_rate(run, batch_size)
        if run < n:
            res["tasks_asked"] = n
            self.ctx.notes.append(f"celery batch ran {run:,} tasks, not {n:,}: at its calibrated rate the full "
                                  f"batch would take over {self.ctx.sizes.celery_batch_seconds:.0f}s here; "
                                  "its throughput is the steady rate either way")
        return res


    def cpu_bound(self, n: int, noop: int, children: int) -> dict[str, Any]:
        """bench.burn on the prefork pool with `children` processes (Celery's default pool)."""
        self._start_worker("cpu_bound", "prefork", children)
        self._warm_up()
        size = work.burn_size()
        burn = self.app.tasks["bench.burn"]
        res = self._batch_rate(n, min(n, 500), task=burn, args=lambda i: (size + i % work.VARIANTS,),
                               expect=lambda i: work.expected(i % work.VARIANTS))
        return {**res, "processes_throughput": res["throughput"], "burn_n": size, "children": children}

    def workflows(self, n: int, steps: int, rounds: int, small: int) -> dict[str, Any]:
        """ConveyorRunner.workflows with Celery's canvas on its Redis result backend: the same
        chord, `chord(header)(callback)`, and chain, timed to the last task's result on Redis
        pub/sub (nobody waits on them meanwhile). A header's end is its result's date_done (stored
        just before its chord counter is counted: Celery acks on receipt, so its ack says nothing
        about the end); the callback's start is the time.time() bench.tsum takes first. The chain
        and the small chord again waited for as an application does, with AsyncResult.get() from
        the send on (it follows the result's parents: on a chord, every header's result)."""
        from celery import chain, chord  # noqa: PLC0415 - Celery only where it runs

        self._fresh("workflows")
        assert self.pool is not None and self.concurrency is not None
        add, tsum = self.app.tasks["bench.add"], self.app.tasks["bench.tsum"]

        def chord_of(size: int) -> Any:
            return chord([add.s(i, i) for i in range(size)], tsum.s())

        def chain_of(size: int) -> Any:
            return chain(add.s(0, 1), *(add.s(1) for _ in range(size - 1)))

        out: dict[str, Any] = {"chord_size": n, "chain_size": steps, "rounds": rounds, "small_chord_size": small}
        self._stop_worker()  # stored, not run
        canvas = chord_of(n)
        mem0 = redis_used_memory(self.redis)
        result = canvas.apply_async()
        time.sleep(0.2)
        out["redis_bytes_per_node"] = (redis_used_memory(self.redis) - mem0) / (n + 1)
        done = Completions(self.results_url, RESULT_PREFIX + "*", n + 1, self.ctx.sizes.timeout, self.ctx.work_dir,
                           strip=RESULT_PREFIX)
        try:
            self._start_worker("workflows", self.pool, self.concurrency, fresh=False)
            done.wait()  # then get() finds it done: get() all along costs (see _timed_workflow)
        finally:
            done.close()
        tasks, (verified, cold) = n + 1, self._chord_outcome(result, n, result.get(timeout=self.ctx.sizes.timeout))

        meter = self._meter()
        runs = [self._timed_workflow(chord_of(n), n + 1) for _ in range(rounds)]
        cpu, calls = meter.stop(), self._calls.per_task(rounds * (n + 1))
        samples = []
        for took, result, value in runs:
            right, got = self._chord_outcome(result, n, value)
            tasks, verified = tasks + n + 1, verified + right
            samples.append({**got, "seconds": took})

        meter = self._meter()
        chain_took, result, value = self._timed_workflow(chain_of(steps), steps)
        chain_cpu = meter.stop()
        tasks, verified = tasks + steps, verified + self._chain_verified(result, steps, value)
        watched_took, result, value = self._timed_workflow(chain_of(steps), steps, watch=True)
        tasks, verified = tasks + steps, verified + self._chain_verified(result, steps, value)

        for watch in (False, True):
            took, result, value = self._timed_workflow(chord_of(small), small + 1, watch)
            tasks, verified = tasks + small + 1, verified + self._chord_outcome(result, small, value)[0]
            out["small_chord_result_seconds" if watch else "small_chord_seconds"] = took

        def p50(key: str) -> float:
            return percentile([s[key] for s in samples], 50)

        for key in ("ack_to_callback_ms", "seconds"):
            out[f"chord_{key}_samples"] = [round(s[key], 4) for s in samples]
        out.update({
            "chord_ack_to_callback_ms": p50("ack_to_callback_ms"),
            "chord_ack_to_callback_max_ms": max(s["ack_to_callback_ms"] for s in samples),
            "chord_seconds": p50("seconds"), "chord_nodes_per_s": (n + 1) / p50("seconds"),
            "cold_chord_ack_to_callback_ms": cold["ack_to_callback_ms"],
            "chain_seconds": chain_took, "chain_steps_per_s": steps / chain_took,
            "chain_result_steps_per_s": steps / watched_took,
            "chain_cpu_ms_per_step_total": round(1000 * sum(chain_cpu.values()) / steps, 3),
            "tasks": tasks, "verified": verified, **cpu_fields(cpu, rounds * (n + 1)), **calls})
        return out

    def _timed_workflow(self, canvas: Any, tasks: int, watch: bool = False) -> tuple[float, Any, Any]:
        """(seconds, its AsyncResult, the value) of one canvas of `tasks` tasks sent on an idle worker:
        from the send to the last task's result on Redis pub/sub, or with `watch`, to the return of
        AsyncResult.get() (called at once)."""
        done = Completions(self.results_url, RESULT_PREFIX + "*", tasks, self.ctx.sizes.timeout, self.ctx.work_dir,
                           strip=RESULT_PREFIX)
        try:
            t0 = time.monotonic()
            result = canvas.apply_async()
            if watch:
                value = result.get(timeout=self.ctx.sizes.timeout)
                end = time.monotonic()
                done.wait()
            else:
                end = done.wait().last()
                value = result.get(timeout=self.ctx.sizes.timeout)
        finally:
            done.close()
        return end - t0, result, value

    def _chord_outcome(self, result: Any, n: int, value: Any) -> tuple[int, dict[str, float]]:
        """How many of a finished chord's n + 1 tasks verified (every header's stored result, the
        callback's sum), and the last header's date_done -> the callback's start."""
        ids = [r.id for r in result.parent.results]  # the callback's parent: the header's GroupResult
        metas = dict(self.app.backend.get_many(ids, timeout=self.ctx.sizes.timeout, interval=0.2))
        right = sum(1 for i, task_id in enumerate(ids)
                    if metas[task_id]["status"] == "SUCCESS" and metas[task_id]["result"] == 2 * i)
        right += int(isinstance(value, dict) and value.get("sum") == n * (n - 1))
        last = max(dt.datetime.fromisoformat(metas[task_id]["date_done"]).timestamp() for task_id in ids)
        started = float(value["started"]) if isinstance(value, dict) else float("nan")
        return right, {"ack_to_callback_ms": 1000 * (started - last)}

    def _chain_verified(self, result: Any, steps: int, value: Any) -> int:
        """How many of a chain's steps verified (step i's result is i + 1), walked back from the
        last step's AsyncResult through .parent."""
        ids: list[str] = []
        while result is not None:
            ids.append(result.id)
            result = result.parent
        ids.reverse()
        if value != steps or len(ids) != steps:
            return 0
        return self._verify({task_id: i + 1 for i, task_id in enumerate(ids)})

    def _batch_rate(self, n: int, batch_size: int, task: Any = None,
                    args: Callable[[int], tuple[Any, ...]] | None = None,
                    expect: Callable[[int], Any] | None = None) -> dict[str, Any]:
        """Celery has no batch publish: each chunk goes out through one held producer, one message
        per task (measured faster here than group(...).apply_async(), which does the same per task).
        The task is bench.add(i, i) unless `task`, `args` and `expect` say otherwise."""
        task = task or self.add
        args = args or (lambda i: (i, i))
        expect = expect or (lambda i: 2 * i)
        done = Completions(self.results_url, RESULT_PREFIX + "*", n, self.ctx.sizes.timeout, self.ctx.work_dir,
                           strip=RESULT_PREFIX)
        try:
            expected: dict[str, int] = {}
            meter = self._meter()
            t0 = time.monotonic()
            for first in range(0, n, batch_size):
                with self.app.producer_or_acquire() as producer:
                    for i in range(first, min(first + batch_size, n)):
                        expected[task.apply_async(args(i), producer=producer).id] = expect(i)
            t1 = time.monotonic()
            done.wait()
            cpu, calls = meter.stop(), self._calls.per_task(n)
        finally:
            done.close()
        verified = self._verify(expected) - len(set(done.ids) - expected.keys())
        return {"throughput": n / (done.last() - t0), "enqueue_rate": n / (t1 - t0), "batch_size": batch_size,
                "tasks": n, "verified": verified, **cpu_fields(cpu, n), **calls}

    def latency(self, n: int) -> dict[str, Any]:
        self._fresh("latency")
        samples: list[float] = []
        verified = 0
        submits: list[float] = []
        for i in range(LATENCY_WARMUP):  # the result consumer's first subscriptions are not timed
            self.add.delay(i, i).get(timeout=30)
        meter = self._meter()
        for i in range(n):
            t0 = time.perf_counter()
            result = self.add.delay(i, i)
            t1 = time.perf_counter()
            value = result.get(timeout=30)
            samples.append(time.perf_counter() - t0)
            submits.append(t1 - t0)
            verified += value == 2 * i
        cpu, calls = meter.stop(), self._calls.per_task(n)
        return {"p50_ms": 1000 * percentile(samples, 50), "p99_ms": 1000 * percentile(samples, 99),
                "mean_ms": 1000 * sum(samples) / n, "submit_p50_ms": 1000 * percentile(submits, 50),
                "tasks": n, "verified": verified, **cpu_fields(cpu, n), **calls}

    def ordinary(self, n: int) -> dict[str, Any]:
        """One thread, as a web application calls: `add.delay(i, i)` one at a time, then each
        `AsyncResult.get()` in order."""
        self._fresh("ordinary")
        producer = CeleryProducer(self.ctx.sizes.timeout, self.app)
        ordinary.warm_up(producer, LATENCY_WARMUP)
        meter = self._meter()
        run = ordinary.one_at_a_time(producer.submit, producer.result, range(n))
        cpu, calls = meter.stop(), self._calls.per_task(n)
        return {**run.fields(), "tasks": n, "verified": run.verified, **cpu_fields(cpu, n), **calls}

    def many_producers(self, n: int, producers: int) -> dict[str, Any]:
        """`producers` processes, each its own app, each delay() one at a time then get() for its
        n/producers tasks, released together."""
        self._fresh("many_producers")
        make = functools.partial(CeleryProducer, self.ctx.sizes.timeout)
        run, cpu = ordinary.run_producers(make, producers, n // producers, self._meter, LATENCY_WARMUP,
                                          self.ctx.sizes.timeout)
        tasks = len(run.numbers)
        return {**run.fields(), "producers": producers, "tasks": tasks, "verified": run.verified,
                **cpu_fields(cpu, tasks), **self._calls.per_task(tasks)}

    # -- results ------------------------------------------------------------------------

    def _results(self, results: list[Any]) -> list[Any]:
        """Every value through the result backend's get_many (batched MGETs, re-polled every 50 ms
        for what is not ready): here it beat ResultSet.join_native and AsyncResult.get per task."""
        metas = dict(self.app.backend.get_many([r.id for r in results], timeout=self.ctx.sizes.timeout,
                                               interval=0.05))
        return [metas[r.id]["result"] if metas[r.id]["status"] == "SUCCESS" else None for r in results]

    def _verify(self, expected: dict[str, Any]) -> int:
        """How many tasks' stored results are SUCCESS with exactly the expected value."""
        backend = self.app.backend
        ids = list(expected)
        ok = 0
        for first in range(0, len(ids), VERIFY_CHUNK):
            chunk = ids[first:first + VERIFY_CHUNK]
            for task_id, meta in backend.get_many(chunk, timeout=self.ctx.sizes.timeout, interval=0.2):
                ok += meta["status"] == "SUCCESS" and meta["result"] == expected[task_id]
        return ok


class CeleryProducer:
    """A web application's producer: `add.delay(i, i)`, results read with `AsyncResult.get()`;
    on its own app (made from BENCH_CELERY_REDIS) unless given one."""

    def __init__(self, timeout: float, app: Any = None) -> None:
        if app is None:
            from bench.celery_app import make_app  # noqa: PLC0415 - Celery only where it runs

            self._own = app = make_app()
        else:
            self._own = None
        self.add = app.tasks["bench.add"]
        self.timeout = timeout

    def submit(self, i: int) -> Any:
        return self.add.delay(i, i)

    def result(self, handle: Any) -> Any:
        return handle.get(timeout=self.timeout)

    def close(self) -> None:
        if self._own is not None:
            _close_app(self._own)


def _close_app(app: Any) -> None:
    consumer = getattr(app.backend, "result_consumer", None)
    if consumer is not None and getattr(consumer, "_pubsub", None) is not None:
        consumer.stop()
    app.close()


def _celery_version() -> str:
    import celery  # noqa: PLC0415

    return str(celery.__version__)
