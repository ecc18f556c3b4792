"""The `cluster` scenario (Conveyor only: Celery has no Redis Cluster broker): the scheduler on
one redis-server and on a Redis Cluster, through each hot-path Redis client, in one run.

1. Variants. The `batch` and `ordinary` workloads (ConveyorRunner.batch and .ordinary: the same
   code, batch size, workers, slots and prefetch; smaller N, see Sizes.cluster_*; ordinary
   without its send() run and per-hop floors), one after the other on a fresh scheduler and
   worker of each variant, every other scheduler and worker stopped and Redis flushed:
     single node, --redis-client hiredis (FastRedis: today's default)
     single node, --redis-client redis-py (redis-py's asyncio Redis)
     cluster, --redis-client hiredis (FastCluster)
     cluster, --redis-client redis-py (redis-py's asyncio RedisCluster)
     cluster, hiredis, --redis-wait-replicas 1 (every submit and ack WAITs for a replica)
   in passes: the variants in this order, then (a second pass) in the reverse order, and so on;
   each figure is the mean of its passes, each pass's kept too. Every comparison is made within
   minutes, and a drift in the machine's load hits every variant about alike. The cluster is
   tests/redis_cluster.py's: 3 primaries with a replica each, private processes on free ports.
   Every task's result is verified as in `batch` (the task hashes read back through a cluster
   client); completions are counted on the queue's shard channel cv:{q:QUEUE}:done at its
   primary, and on cv:done (where the scheduler publishes when its hot path is redis-py's:
   `done_channels` says which was used).
2. Per primary: on the cluster with hiredis, the batch workload into ONE queue, then the same
   total split over THREE queues whose slots are on the three primaries (task i to queue i % 3:
   every submit_many carries all three), one worker process consuming all three. CPU of each
   Redis node, the scheduler and the worker over the timed part: a queue lives in one slot, so
   on one primary, and its tasks/s is capped by that primary's core; the scheduler, one Python
   process, may cap it first on this machine (its CPU % says which is saturated).
3. The Redis clients' micro-benchmark (bench/redis_clients_micro.py, in a child process, on the
   same server and cluster): the scheduler's submit.lua through our FastRedis/FastCluster,
   redis-py, coredis and valkey-glide.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bench.common import ROOT
from bench.redis_backends import ClusterRedis

if TYPE_CHECKING:
    from bench.conveyor_runner import ConveyorRunner


@dataclass(frozen=True)
class Variant:
    key: str
    label: str
    topology: str
    args: tuple[str, ...]


VARIANTS = (
    Variant("single_hiredis", "single, hiredis (FastRedis; default)", "single", ("--redis-client", "hiredis")),
    Variant("single_redis_py", "single, redis-py (Redis)", "single", ("--redis-client", "redis-py")),
    Variant("cluster_hiredis", "cluster, hiredis (FastCluster)", "cluster", ("--redis-client", "hiredis")),
    Variant("cluster_redis_py", "cluster, redis-py (RedisCluster)", "cluster", ("--redis-client", "redis-py")),
    Variant("cluster_hiredis_wait1", "cluster, hiredis, WAIT 1 replica", "cluster",
            ("--redis-client", "hiredis", "--redis-wait-replicas", "1")),
)
BASELINE = "single_hiredis"
SCALE_PREFIX = "scale"
MICRO_TIMEOUT = 600.0


def run(parent: ConveyorRunner, batch_n: int, batch_size: int, ordinary_n: int, passes: int, micro_calls: int,
        micro_rounds: int) -> dict[str, Any]:
    """The whole scenario on `parent`'s redis-server and a private cluster (see the module's doc)."""
    from bench.conveyor_runner import ConveyorRunner  # noqa: PLC0415 - that module calls this one

    ctx = parent.ctx
    parent._stop_all()
    t_start = time.monotonic()
    cluster = ClusterRedis(ctx.work_dir, "conveyor-cluster")
    ctx.log(f"  cluster up in {time.monotonic() - t_start:.1f}s: {cluster.url}")
    runners = {v.key: ConveyorRunner(ctx, parent.workers, parent.concurrency, parent.prefetch,
                                     backend=parent.backend if v.topology == "single" else cluster,
                                     scheduler_args=v.args, name=f"conveyor-{v.key}") for v in VARIANTS}
    out: dict[str, Any] = {"batch_n": batch_n, "batch_size": batch_size, "ordinary_n": ordinary_n, "passes": passes,
                           "workers": parent.workers, "concurrency": parent.concurrency, "prefetch": parent.prefetch,
                           "cluster_nodes": {role: node.addr for role, node in cluster.roles.items()},
                           "variants": {v.key: {"label": v.label, "topology": v.topology,
                                                "scheduler_args": list(v.args), "passes": []} for v in VARIANTS}}
    errors: list[str] = []
    runs: list[dict[str, Any]] = []  # every measured run, for the task count

    def measure(what: str, runner: ConveyorRunner, fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        t0 = time.monotonic()
        try:
            res = fn()
        except Exception as exc:
            ctx.log(traceback.format_exc())
            res = {"error": f"{type(exc).__name__}: {exc}"[:500]}
            errors.append(f"{what}: {res['error']}")
        finally:
            runner._stop_all()  # no scheduler or worker of one variant runs during the next
        res["elapsed_s"] = round(time.monotonic() - t0, 1)
        return res

    def variant_pass(runner: ConveyorRunner) -> dict[str, Any]:
        """A fresh scheduler and worker, then the batch workload, then the ordinary one on them."""
        runner._fresh("variant")
        got = {"batch": runner.batch(batch_n, batch_size, fresh=False)}
        got["ordinary"] = runner.ordinary(ordinary_n, send=False, floors=False, fresh=False)
        return got

    try:
        for p in range(passes):  # ABCDE, then EDCBA: a drift in the machine's load hits every variant alike
            for v in VARIANTS if p % 2 == 0 else VARIANTS[::-1]:
                got = measure(f"{v.key} pass {p + 1}", runners[v.key], lambda r=runners[v.key]: variant_pass(r))
                out["variants"][v.key]["passes"].append(got)
                runs += [got[kind] for kind in ("batch", "ordinary") if kind in got]
                for kind in ("batch", "ordinary"):
                    if kind in got:
                        ctx.log(f"  {v.key} pass {p + 1} {kind}: {_brief(got[kind])}")
                if "error" in got:
                    ctx.log(f"  {v.key} pass {p + 1}: {got['error']}")
        queues = cluster.queue_per_primary(SCALE_PREFIX)
        scaling = runners["cluster_hiredis"]
        per_primary: dict[str, Any] = {"queues": {q: cluster.role_of(q) for q in queues}}
        for key, some in (("one_queue", queues[:1]), ("three_queues", queues)):
            res = measure(f"per primary, {len(some)} queue(s)", scaling,
                          lambda some=some: scaling.batch(batch_n, batch_size, queues=some))
            ctx.log(f"  per primary, {len(some)} queue(s): {_brief(res)}")
            runs.append(res)
            per_primary[key] = _per_node(res, {cluster.role_of(q): batch_n / len(some) for q in some})
        per_primary["three_over_one"] = _ratio(per_primary["three_queues"].get("throughput"),
                                               per_primary["one_queue"].get("throughput"))
        out["per_primary"] = per_primary
    finally:
        for runner in runners.values():
            runner.close()  # its processes; the server and the cluster are not its own
    try:
        out["clients_micro"] = _micro(ctx, parent.backend.url, cluster.url, micro_calls, micro_rounds)
    except Exception as exc:
        ctx.log(traceback.format_exc())
        errors.append(f"clients micro-benchmark: {type(exc).__name__}: {exc}"[:500])
    finally:
        cluster.stop()

    out.update(_summary(out["variants"]))
    out["tasks"] = sum(int(r.get("tasks", 0)) for r in runs)
    out["verified"] = sum(int(r.get("verified", 0)) for r in runs)
    if errors:
        out["error"] = "; ".join(errors)[:1000]
    return out


def _summary(variants: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Each variant's headline figures, the mean of its passes (each pass's kept beside it), and
    their ratios: to single-node hiredis, and on the cluster, redis-py over hiredis (the issue's
    15% rule) and WAIT over no WAIT."""
    out: dict[str, Any] = {}
    for v in variants.values():
        batches = [p["batch"] for p in v["passes"] if "batch" in p]
        ordinaries = [p["ordinary"] for p in v["passes"] if "ordinary" in p]
        v["summary"] = {
            "batch_throughput": _mean(r.get("throughput") for r in batches),
            "batch_throughput_passes": [r.get("throughput") for r in batches],
            "batch_cpu_ms_per_task_total": _mean(r.get("cpu_ms_per_task_total") for r in batches),
            "batch_cpu_ms_per_task": _cpu_grouped(batches),
            "batch_scheduler_cpu_ms_per_task": _mean(r.get("cpu_ms_per_task", {}).get("scheduler") for r in batches),
            "ordinary_throughput": _mean(r.get("throughput") for r in ordinaries),
            "ordinary_throughput_passes": [r.get("throughput") for r in ordinaries],
            "ordinary_submit_p50_ms": _mean(r.get("submit_p50_ms") for r in ordinaries),
            "ordinary_submit_p50_ms_passes": [r.get("submit_p50_ms") for r in ordinaries],
            "ordinary_submit_p99_ms": _mean(r.get("submit_p99_ms") for r in ordinaries),
            "ordinary_cpu_ms_per_task_total": _mean(r.get("cpu_ms_per_task_total") for r in ordinaries),
            "ordinary_cpu_ms_per_task": _cpu_grouped(ordinaries),
            "ordinary_scheduler_cpu_ms_per_task": _mean(r.get("cpu_ms_per_task", {}).get("scheduler")
                                                        for r in ordinaries),
            "completions_on": sorted({c for r in batches for c in r.get("done_channels", {})}),
        }
    base = variants[BASELINE]["summary"]
    for key, v in variants.items():
        for kind in ("batch", "ordinary"):
            figure = v["summary"][f"{kind}_throughput"]
            v["summary"][f"{kind}_vs_single_hiredis"] = _ratio(figure, base[f"{kind}_throughput"])
            out[f"{key}_{kind}_throughput"] = figure
        out[f"{key}_ordinary_submit_p50_ms"] = v["summary"]["ordinary_submit_p50_ms"]
    for kind in ("batch", "ordinary"):
        for name, top, bottom in (("cluster_redis_py_over_hiredis", "cluster_redis_py", "cluster_hiredis"),
                                  ("single_redis_py_over_hiredis", "single_redis_py", "single_hiredis"),
                                  ("cluster_hiredis_over_single", "cluster_hiredis", "single_hiredis"),
                                  ("cluster_wait1_over_hiredis", "cluster_hiredis_wait1", "cluster_hiredis")):
            out[f"{name}_{kind}"] = _ratio(out[f"{top}_{kind}_throughput"], out[f"{bottom}_{kind}_throughput"])
    return out


def _mean(values: Any) -> float | None:
    got = [float(v) for v in values if isinstance(v, (int, float))]
    return sum(got) / len(got) if got else None


def _cpu_grouped(runs: list[dict[str, Any]]) -> dict[str, float]:
    """CPU ms per task by process kind over the runs (their mean), a cluster's nodes summed as
    "redis" (each node kept too)."""
    names = {name for r in runs for name in r.get("cpu_ms_per_task", {})}
    cpu = {name: _mean(r.get("cpu_ms_per_task", {}).get(name) for r in runs) or 0.0 for name in names}
    out = {k: round(v, 3) for k, v in cpu.items() if not k.startswith("redis")}
    redis = {k: round(v, 3) for k, v in cpu.items() if k.startswith("redis")}
    out["redis"] = round(sum(redis.values()), 3)
    if len(redis) > 1:
        out.update(sorted(redis.items()))
    return out


def _per_node(res: dict[str, Any], tasks_on: dict[str, float]) -> dict[str, Any]:
    """A per-primary run's figures: tasks/s, and each process's CPU as % of one core over the
    timed part; for each primary that held queues, Redis µs per task there and the tasks/s its
    core would allow at 100% (its tasks over its CPU seconds)."""
    if "error" in res:
        return {"error": res["error"]}
    seconds = float(res["seconds"])
    cpu: dict[str, float] = res["cpu_s"]
    out: dict[str, Any] = {"throughput": res["throughput"], "seconds": round(seconds, 2), "tasks": res["tasks"],
                           "cpu_pct": {name: round(100 * sec / seconds, 1) for name, sec in cpu.items()},
                           "redis_usec_per_task": {}, "primary_ceiling": {}}
    for role, tasks in tasks_on.items():
        used = cpu.get(role, 0.0)
        out["redis_usec_per_task"][role] = round(1e6 * used / tasks, 1) if tasks else None
        out["primary_ceiling"][role] = round(tasks / used) if used else None
    return out


def _micro(ctx: Any, single_url: str, cluster_url: str, calls: int, rounds: int) -> dict[str, Any]:
    """bench/redis_clients_micro.py in a child process (its own event loop and CPU account)."""
    out = ctx.work_dir / "clients-micro.json"
    done = subprocess.run([sys.executable, "-m", "bench.redis_clients_micro", "--redis-url", single_url,
                           "--cluster-url", cluster_url, "--calls", str(calls), "--rounds", str(rounds),
                           "--json", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=MICRO_TIMEOUT,
                          check=False)
    for line in done.stdout.splitlines():
        ctx.log(f"  {line}")
    if not out.exists():
        raise RuntimeError(f"redis_clients_micro failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(out.read_text())  # type: ignore[no-any-return]


def _ratio(top: float | None, bottom: float | None) -> float | None:
    return top / bottom if top is not None and bottom else None


def _brief(res: dict[str, Any]) -> str:
    keys = ("throughput", "submit_p50_ms", "tasks", "verified", "seconds", "done_channels", "cpu_ms_per_task_total",
            "error", "elapsed_s")
    return ", ".join(f"{k}={res[k]:,.2f}" if isinstance(res[k], float) else f"{k}={res[k]}"
                     for k in keys if k in res)
