"""The scenarios of issues 6, 17 and 18 and the order they run in.

One system runs at a time, each against its own private Redis, so neither sees the other's
load. Every scenario returns "tasks" and "verified" (tasks whose result was read back and
was exactly right); a lost or wrong task is never counted as done.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable
from typing import Any

from bench.common import Context
from bench.measure import StealMeter

SCENARIOS = ("single_producer", "batch", "latency", "ordinary", "many_producers", "depth", "fan_in", "dashboard",
             "cpu_bound", "workflows", "cluster")
DEFAULT = tuple(name for name in SCENARIOS if name != "cluster")
"""What `make bench` runs unless told (--only): `cluster` is asked for by name (2.2 minutes measured on
this 2-core machine at load average 3, 3.8 at load 6: with it `make bench` would reach 15 minutes)."""
CONVEYOR_ONLY = {"depth", "fan_in", "dashboard", "cluster"}
"""Celery has no equivalent of these (its queue depth and idle-worker cost are Redis's and kombu's;
its Redis broker and result backend do not take a Redis Cluster)."""
WITH_TLS = {"single_producer", "batch", "latency"}
"""What conveyor-tls runs: the paths issue 15 judges against plaintext."""

DESCRIPTIONS = {
    "single_producer": "one thread submits N add(i, i) one call at a time, then waits for every result",
    "batch": "N tasks submitted in batches; done when every completion is recorded; then all verified",
    "latency": "sequential submit-then-wait round trips on idle workers",
    "ordinary": "one thread: N submit() one at a time, then each handle.result() in order (Conveyor: "
                "also send() then result())",
    "many_producers": "producer processes released together, each its own client: submit() one at a time, "
                      "then result() per task",
    "depth": "dispatch rate with 1k vs 1M queued; Redis bytes per queued task; scheduler RSS at both; "
             "PurgeQueue of what is left, with Redis PINGed throughout",
    "fan_in": "idle connected workers' streams: scheduler CPU and RSS",
    "dashboard": "the web dashboard with 1M tasks queued: each page's p95 over sequential GETs; its CPU "
                 "with 50 open /events/overview streams",
    "cpu_bound": "a ~20 ms pure-Python task on 2 slots: threads vs child processes (Celery: prefork -c 2); "
                 "then no-op tasks through 2 children",
    "workflows": "a chord of N add(i, i) into a sum (last header ack -> callback start; Redis bytes per node, "
                 "stored not run) and a chain of add steps (steps/s)",
    "cluster": "batch and ordinary on one Redis and on a Redis Cluster (3 primaries + 3 replicas), hiredis vs "
               "redis-py, and WAIT for 1 replica; 1 vs 3 queues on 3 primaries; the Redis clients' EVALSHA "
               "micro-benchmark (Conveyor only: Celery has no Redis Cluster broker)",
}


def run_system(ctx: Context, runner: Any, scenarios: list[str]) -> dict[str, dict[str, Any]]:
    """Runs the scenarios on one system; a scenario that fails is recorded and the rest go on."""
    s = ctx.sizes
    calls: dict[str, Callable[[], dict[str, Any]]] = {
        "single_producer": lambda: runner.single_producer(s.single),
        "batch": lambda: runner.batch(s.batch, s.batch_size),
        "latency": lambda: runner.latency(s.latency),
        "ordinary": lambda: runner.ordinary(s.ordinary),
        "many_producers": lambda: runner.many_producers(s.many_producers, s.producers),
        "depth": lambda: runner.depth(s.depth_small, s.depth_large, s.depth_rounds, s.depth_push_batch),
        "fan_in": lambda: runner.fan_in(s.fan_in_workers, s.fan_in_seconds),
        "dashboard": lambda: runner.dashboard(s.dashboard_tasks, s.depth_push_batch, s.dashboard_requests,
                                              s.dashboard_streams, s.dashboard_seconds),
        "cpu_bound": lambda: runner.cpu_bound(s.cpu_tasks, s.cpu_noop, 2),
        "workflows": lambda: runner.workflows(s.workflow_chord, s.workflow_chain, s.workflow_rounds,
                                                 s.workflow_small_chord),
        "cluster": lambda: runner.cluster(s.cluster_batch, s.batch_size, s.cluster_ordinary, s.cluster_passes,
                                          s.cluster_micro_calls, s.cluster_micro_rounds),
    }
    out: dict[str, dict[str, Any]] = {}
    for name in scenarios:
        if not runs_on(runner.name, name):
            continue
        ctx.log(f"[{runner.name}] {name}: {DESCRIPTIONS[name]}")
        t0 = time.monotonic()
        steal = StealMeter().start()
        try:
            res = calls[name]()
        except Exception as exc:
            ctx.log(traceback.format_exc())
            res = {"error": f"{type(exc).__name__}: {exc}"[:500]}
        res["elapsed_s"] = round(time.monotonic() - t0, 1)
        res["cpu_steal_pct"] = steal.stop()
        ctx.log(f"[{runner.name}] {name}: {_brief(res)}")
        out[name] = res
    return out


def runs_on(system: str, scenario: str) -> bool:
    """Whether `system` has this scenario."""
    if system == "conveyor-tls":
        return scenario in WITH_TLS
    return system == "conveyor" or scenario not in CONVEYOR_ONLY


def _brief(res: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v:,.2f}" if isinstance(v, float) else f"{k}={v}"
                     for k, v in res.items() if k not in BULKY)


BULKY = ("profile", "variants", "per_primary", "clients_micro")
"""Nested results left out of the one-line log (the report prints the cluster scenario's as tables)."""
