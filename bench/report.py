"""The benchmark's report: the targets of issues 6, 15, 16, 17 and 18 and of workflows checked against a
run, the printed table, and the ordinary path's per-hop budget."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

Results = dict[str, dict[str, dict[str, Any]]]


@dataclass(frozen=True)
class Target:
    scenario: str
    text: str
    check: Callable[[Results], tuple[float | None, bool | None]]
    """Returns (the measured value, whether it meets the target); None when it cannot be judged."""


def _get(res: Results, scenario: str, system: str, key: str) -> float | None:
    """A scenario's figure; "cpu_ms_per_task.producer" reads into a nested dict."""
    value: Any = res.get(scenario, {}).get(system, {})
    for part in key.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return float(value) if isinstance(value, (int, float)) else None


def _at_least(scenario: str, key: str, bound: float) -> Callable[[Results], tuple[float | None, bool | None]]:
    def check(res: Results) -> tuple[float | None, bool | None]:
        v = _get(res, scenario, "conveyor", key)
        return v, None if v is None else v >= bound
    return check


def _at_most(scenario: str, key: str, bound: float) -> Callable[[Results], tuple[float | None, bool | None]]:
    def check(res: Results) -> tuple[float | None, bool | None]:
        v = _get(res, scenario, "conveyor", key)
        return v, None if v is None else v <= bound
    return check


def _ratio(scenario: str, top: tuple[str, str], bottom: tuple[str, str], at_least: float
           ) -> Callable[[Results], tuple[float | None, bool | None]]:
    """One run's (system, key) figure over another's, at least `at_least`."""
    def check(res: Results) -> tuple[float | None, bool | None]:
        t, b = _get(res, scenario, *top), _get(res, scenario, *bottom)
        if t is None or not b:
            return None, None
        return t / b, t / b >= at_least
    return check


def _ratio_to_celery(scenario: str, key: str) -> Callable[[Results], tuple[float | None, bool | None]]:
    """Conveyor's `key` at least 5x Celery's throughput in the same run."""
    return _ratio(scenario, ("conveyor", key), ("celery", "throughput"), 5)


def _tls_ratio(scenario: str, key: str, higher_is_better: bool
               ) -> Callable[[Results], tuple[float | None, bool | None]]:
    """conveyor-tls against plaintext conveyor in the same run: within 10% (issue 15)."""
    def check(res: Results) -> tuple[float | None, bool | None]:
        plain, tls = _get(res, scenario, "conveyor", key), _get(res, scenario, "conveyor-tls", key)
        if plain is None or tls is None or not plain:
            return None, None
        ratio = tls / plain
        return ratio, ratio >= 0.9 if higher_is_better else ratio <= 1.1
    return check


def _client_justified(kind: str) -> Callable[[Results], tuple[float | None, bool | None]]:
    """The cluster issue's 15% rule: on the cluster, redis-py's RedisCluster as the hot path's client
    over FastCluster. Below 0.85 the hand-written client is justified (PASS); at 0.85 or more the
    maintained library must be adopted (FAIL)."""
    def check(res: Results) -> tuple[float | None, bool | None]:
        v = _get(res, "cluster", "conveyor", f"cluster_redis_py_over_hiredis_{kind}")
        return v, None if v is None else v < 0.85
    return check


def _rss_growth(res: Results) -> tuple[float | None, bool | None]:
    small, large = _get(res, "depth", "conveyor", "rss_mib_1k"), _get(res, "depth", "conveyor", "rss_mib_1m")
    if small is None or large is None:
        return None, None
    return large - small, large - small < 20


TARGETS = [
    Target("single_producer", "conveyor throughput >= 5x celery's", _ratio_to_celery("single_producer", "throughput")),
    Target("single_producer", "send() + flush(): throughput >= 5x celery's",
           _ratio_to_celery("single_producer", "send_throughput")),
    Target("batch", "conveyor throughput >= 10,000 tasks/s", _at_least("batch", "throughput", 10_000)),
    Target("latency", "p50 <= 0.7 ms", _at_most("latency", "p50_ms", 0.7)),
    Target("latency", "p99 <= 1.7 ms", _at_most("latency", "p99_ms", 1.7)),
    Target("ordinary", "end-to-end >= 5x celery's", _ratio_to_celery("ordinary", "throughput")),
    Target("ordinary", "CPU per task, all processes <= 0.8 ms", _at_most("ordinary", "cpu_ms_per_task_total", 0.8)),
    Target("many_producers", ">= 5,000 tasks/s, one scheduler", _at_least("many_producers", "throughput", 5_000)),
    Target("depth", "rate at 1M queued >= 0.9x rate at 1k",
           _ratio("depth", ("conveyor", "rate_1m"), ("conveyor", "rate_1k"), 0.9)),
    Target("depth", "<= 300 Redis bytes per queued task", _at_most("depth", "redis_bytes_per_task", 300)),
    Target("depth", "scheduler RSS grows < 20 MiB, 1k -> 1M", _rss_growth),
    Target("depth", "purge: Redis answers a PING within 50 ms throughout",
           _at_most("depth", "purge_worst_ping_ms", 50)),
    Target("fan_in", "200 idle workers < 5% of a core", _at_most("fan_in", "cpu_pct", 5.0)),
    Target("dashboard", "every page's p95 <= 100 ms, 1M tasks queued", _at_most("dashboard", "page_p95_max_ms", 100)),
    Target("dashboard", "50 open overview streams <= 5% of a core", _at_most("dashboard", "sse_cpu_pct", 5.0)),
    Target("batch", "TLS + token: throughput >= 0.9x plaintext", _tls_ratio("batch", "throughput", True)),
    Target("latency", "TLS + token: p50 <= 1.1x plaintext", _tls_ratio("latency", "p50_ms", False)),
    Target("latency", "TLS + token: p99 <= 1.1x plaintext", _tls_ratio("latency", "p99_ms", False)),
    Target("cpu_bound", "2 children: throughput >= 1.8x the thread pool's",
           _ratio("cpu_bound", ("conveyor", "processes_throughput"), ("conveyor", "threads_throughput"), 1.8)),
    Target("cpu_bound", "2 children: throughput >= celery prefork -c 2",
           _ratio("cpu_bound", ("conveyor", "processes_throughput"), ("celery", "processes_throughput"), 1.0)),
    Target("cpu_bound", "no-op tasks through 2 children >= 3,000/s",
           _at_least("cpu_bound", "noop_processes_throughput", 3_000)),
    Target("workflows", "last header ack -> callback start <= 100 ms",
           _at_most("workflows", "chord_ack_to_callback_ms", 100)),
    Target("workflows", "chain steps/s >= celery's (the ratio)",
           _ratio("workflows", ("conveyor", "chain_steps_per_s"), ("celery", "chain_steps_per_s"), 1.0)),
    Target("cluster", "hand-written client justified: batch, redis-py < 0.85x",
           _client_justified("batch")),
    Target("cluster", "hand-written client justified: ordinary, redis-py < 0.85x",
           _client_justified("ordinary")),
]

ORDINARY_ROWS = [
    ("throughput", "end-to-end tasks/s", "{:,.0f}", True),
    ("submit_phase_rate", "submit phase tasks/s", "{:,.0f}", True),
    ("submit_p50_ms", "submit() p50 ms", "{:.2f}", False),
    ("submit_p99_ms", "submit() p99 ms", "{:.2f}", False),
    ("result_p50_ms", "result() p50 ms", "{:.2f}", False),
    ("result_p99_ms", "result() p99 ms", "{:.2f}", False),
    *((f"cpu_ms_per_task.{name}", f"CPU ms per task, {name}", "{:.3f}", False)
      for name in ("producer", "producers", "scheduler", "worker", "redis")),
    ("cpu_ms_per_task_total", "CPU ms per task, all processes", "{:.2f}", False),
]
"""What both ordinary-path scenarios show (a process kind a run does not have is left out)."""

# (scenario, key, label, format, higher is better)
ROWS = [
    ("single_producer", "throughput", "end-to-end tasks/s", "{:,.0f}", True),
    ("single_producer", "enqueue_rate", "enqueue tasks/s", "{:,.0f}", True),
    ("single_producer", "send_throughput", "end-to-end tasks/s with send()", "{:,.0f}", True),
    ("single_producer", "send_enqueue_rate", "enqueue tasks/s with send()+flush()", "{:,.0f}", True),
    ("single_producer", "cpu_ms_per_task_total", "CPU ms per task, all processes", "{:.2f}", False),
    ("single_producer", "grpc_floor_rate", "ceiling: no-op Pipeline calls/s", "{:,.0f}", True),
    ("single_producer", "grpc_unary_floor_rate", "ceiling: no-op unary calls/s", "{:,.0f}", True),
    ("batch", "throughput", "end-to-end tasks/s", "{:,.0f}", True),
    ("batch", "enqueue_rate", "enqueue tasks/s", "{:,.0f}", True),
    ("batch", "cpu_ms_per_task_total", "CPU ms per task, all processes", "{:.2f}", False),
    ("latency", "p50_ms", "p50 ms", "{:.2f}", False),
    ("latency", "p99_ms", "p99 ms", "{:.2f}", False),
    ("latency", "submit_p50_ms", "p50 ms of the submit call alone", "{:.2f}", False),
    ("latency", "two_calls_p50_ms", "p50 ms as submit() then result()", "{:.2f}", False),
    ("single_producer", "grpc_floor_p50_ms", "p50 ms, no-op Pipeline call", "{:.2f}", False),
    ("single_producer", "grpc_unary_floor_p50_ms", "p50 ms, no-op unary call", "{:.2f}", False),
    ("single_producer", "grpc_relay_floor_p50_ms", "p50 ms, no-op relay via a worker", "{:.2f}", False),
    *(("ordinary", key, label, fmt, better) for key, label, fmt, better in ORDINARY_ROWS),
    ("ordinary", "send_throughput", "end-to-end tasks/s, send()", "{:,.0f}", True),
    ("ordinary", "send_submit_phase_rate", "send phase tasks/s, not stored", "{:,.0f}", True),
    ("ordinary", "send_result_p50_ms", "result() p50 ms after send()", "{:.2f}", False),
    ("ordinary", "send_result_p99_ms", "result() p99 ms after send()", "{:.2f}", False),
    *(("many_producers", key, label, fmt, better) for key, label, fmt, better in ORDINARY_ROWS),
    ("depth", "rate_1k", "dispatch tasks/s, 1k queued", "{:,.0f}", True),
    ("depth", "rate_1m", "dispatch tasks/s, large queue", "{:,.0f}", True),
    ("depth", "redis_bytes_per_task", "Redis bytes / queued task", "{:,.0f}", False),
    ("depth", "index_bytes_per_task", "of which the task index (ListTasks)", "{:,.1f}", False),
    ("depth", "rss_mib_1k", "scheduler RSS MiB, 1k queued", "{:.1f}", False),
    ("depth", "rss_mib_1m", "scheduler RSS MiB, large queue", "{:.1f}", False),
    ("depth", "push_rate", "submit_many push tasks/s", "{:,.0f}", True),
    ("depth", "purge_tasks", "PurgeQueue: tasks purged", "{:,.0f}", True),
    ("depth", "purge_seconds", "PurgeQueue: seconds", "{:.2f}", False),
    ("depth", "purge_worst_ping_ms", "PurgeQueue: worst PING ms meanwhile", "{:.1f}", False),
    ("depth", "longest_command_ms", "longest Redis command ms, timed rounds + purge", "{:.1f}", False),
    ("fan_in", "cpu_pct", "scheduler CPU %, idle workers", "{:.2f}", False),
    ("fan_in", "baseline_cpu_pct", "scheduler CPU %, no workers", "{:.2f}", False),
    ("fan_in", "rss_mib", "scheduler RSS MiB, idle workers", "{:.1f}", False),
    *(("dashboard", f"p95_ms_{page}", f"p95 ms, page {page}", "{:.1f}", False)
      for page in ("overview", "queues", "tasks", "tasks_deep_queued", "task", "dead", "workers", "schedules")),
    ("dashboard", "rpc_p95_ms_tasks", "p95 ms, its ListTasks alone (SDK)", "{:.1f}", False),
    ("dashboard", "rpc_p95_ms_tasks_deep_queued", "p95 ms, tasks_deep_queued's ListTasks", "{:.1f}", False),
    ("dashboard", "sse_cpu_pct", "dashboard CPU %, 50 overview streams", "{:.2f}", False),
    ("dashboard", "idle_cpu_pct", "dashboard CPU %, no client", "{:.2f}", False),
    ("dashboard", "sse_events", "overview events sent, measured stretch", "{:,.0f}", True),
    ("cpu_bound", "threads_throughput", "~20 ms tasks/s, 2 threads", "{:,.1f}", True),
    ("cpu_bound", "processes_throughput", "~20 ms tasks/s, 2 child processes", "{:,.1f}", True),
    ("cpu_bound", "noop_processes_throughput", "no-op tasks/s, 2 child processes", "{:,.0f}", True),
    ("workflows", "chord_ack_to_callback_ms", "chord ack->callback start p50 ms", "{:.1f}", False),
    ("workflows", "chord_ack_to_callback_max_ms", "chord ack->callback start max ms", "{:.1f}", False),
    ("workflows", "chord_ack_to_release_ms", "chord ack->callback submitted ms", "{:.1f}", False),
    ("workflows", "chord_ack_to_lease_ms", "chord ack->callback leased ms", "{:.1f}", False),
    ("workflows", "chord_seconds", "chord end-to-end s, p50", "{:.2f}", False),
    ("workflows", "chord_nodes_per_s", "chord nodes/s", "{:,.0f}", True),
    ("workflows", "redis_bytes_per_node", "chord stored: Redis bytes/node", "{:,.0f}", False),
    ("workflows", "cpu_ms_per_task_total", "chord CPU ms/node, all processes", "{:.2f}", False),
    ("workflows", "chain_steps_per_s", "chain steps/s", "{:,.0f}", True),
    ("workflows", "chain_cpu_ms_per_step_total", "chain CPU ms/step, all processes", "{:.2f}", False),
    ("workflows", "chain_result_steps_per_s", "chain steps/s to result()/get()", "{:,.0f}", True),
    ("workflows", "small_chord_seconds", "small chord end-to-end s", "{:.2f}", False),
    ("workflows", "small_chord_result_seconds", "small chord s to result()/get()", "{:.2f}", False),
    *((scenario, "cpu_steal_pct", "machine: CPU % stolen by host", "{:.1f}", False)
      for scenario in ("single_producer", "batch", "latency", "ordinary", "many_producers", "depth", "fan_in",
                       "dashboard", "cpu_bound", "workflows", "cluster")),
]


def judge(results: Results) -> list[dict[str, Any]]:
    out = []
    for t in TARGETS:
        value, ok = t.check(results)
        out.append({"scenario": t.scenario, "target": t.text, "value": value,
                    "result": "n/a" if ok is None else "PASS" if ok else "FAIL"})
    return out


def verification(results: Results) -> list[str]:
    """Every scenario/system whose tasks did not all verify (or that failed to run)."""
    problems = []
    for scenario, systems in results.items():
        for system, res in systems.items():
            if "skipped" in res:
                continue
            if "error" in res:
                problems.append(f"{scenario}/{system}: {res['error']}")
            elif res.get("verified") != res.get("tasks"):
                problems.append(f"{scenario}/{system}: {res.get('verified')} of {res.get('tasks')} verified")
    return problems


def table(doc: dict[str, Any]) -> str:
    results: Results = doc["scenarios"]
    lines = [f"{'scenario':16s} {'metric':32s} {'conveyor':>11s} {'celery':>11s} {'conv/cel':>9s} {'conv+tls':>11s}"]
    lines.append("-" * len(lines[0]))
    for scenario, key, label, fmt, _ in ROWS:
        if scenario not in results:
            continue
        c = _get(results, scenario, "conveyor", key)
        k = _get(results, scenario, "celery", key)
        t = _get(results, scenario, "conveyor-tls", key)
        if c is None and k is None and t is None:
            continue
        ratio = f"{c / k:8.2f}x" if c is not None and k else ""
        lines.append(f"{scenario:16s} {label:32s} {fmt.format(c) if c is not None else '-':>11s} "
                     f"{fmt.format(k) if k is not None else '-':>11s} {ratio:>9s} "
                     f"{fmt.format(t) if t is not None else '-':>11s}")
    lines += _budget_lines(doc.get("hop_budget") or [])
    cluster = results.get("cluster", {}).get("conveyor", {})
    if "variants" in cluster:
        lines += ["", *cluster_lines(cluster)]
    lines.append("")
    width = max(44, *(len(t["target"]) for t in doc["targets"]))
    lines.append(f"{'scenario':16s} {'target':{width}s} {'measured':>11s}  result")
    for t in doc["targets"]:
        v = t["value"]
        shown = "-" if v is None else f"{v:,.2f}"
        lines.append(f"{t['scenario']:16s} {t['target']:{width}s} {shown:>11s}  {t['result']}")
    problems = doc.get("verification_problems") or []
    lines.append("")
    lines.append("verification: every task's result checked: "
                 + ("all right" if not problems else "PROBLEMS: " + "; ".join(problems)))
    return "\n".join(lines)


def _num(value: Any, fmt: str, width: int) -> str:
    return f"{value:{width}{fmt}}" if isinstance(value, (int, float)) else f"{'-':>{width}s}"


def cluster_lines(res: dict[str, Any]) -> list[str]:
    """The cluster scenario's tables: the variants, the per-primary runs, the Redis clients."""
    lines = [f"cluster: Conveyor on one Redis vs a Redis Cluster (3 primaries + 3 replicas); batch: "
             f"{res['batch_n']:,} tasks in batches of {res['batch_size']:,}; ordinary: {res['ordinary_n']:,} "
             f"submit() one at a time, then result(); {res['workers']} worker x {res['concurrency']} slots",
             f"  tasks/s: mean of {res.get('passes', 1)} passes (each pass's in brackets); x single: over single-node "
             f"hiredis; sched ms: the scheduler's CPU ms per task (steadier than tasks/s on a busy machine)",
             f"  {'variant':38s} {'batch/s':>7s} {'(passes)':15s} {'x single':>8s} {'sched ms':>8s} "
             f"{'ordinary/s':>10s} {'(passes)':11s} {'x single':>8s} {'sched ms':>8s} {'submit p50':>10s}  "
             f"completions on"]
    for v in res["variants"].values():
        s = v.get("summary", {})
        errors = [p["error"] for p in v.get("passes", []) if "error" in p]
        lines.append(f"  {v['label']:38s} {_num(s.get('batch_throughput'), ',.0f', 7)} "
                     f"{_passes(s.get('batch_throughput_passes'), 15)} "
                     f"{_num(s.get('batch_vs_single_hiredis'), '.2f', 8)} "
                     f"{_num(s.get('batch_scheduler_cpu_ms_per_task'), '.3f', 8)} "
                     f"{_num(s.get('ordinary_throughput'), ',.0f', 10)} "
                     f"{_passes(s.get('ordinary_throughput_passes'), 11)} "
                     f"{_num(s.get('ordinary_vs_single_hiredis'), '.2f', 8)} "
                     f"{_num(s.get('ordinary_scheduler_cpu_ms_per_task'), '.2f', 8)} "
                     f"{_num(s.get('ordinary_submit_p50_ms'), '.2f', 10)}  "
                     f"{', '.join(s.get('completions_on', []))}" + (f"  ERROR {'; '.join(errors)}" if errors else ""))
    for key, label in (("cluster_redis_py_over_hiredis", "cluster: redis-py / hiredis (15% rule)"),
                       ("single_redis_py_over_hiredis", "single: redis-py / hiredis"),
                       ("cluster_hiredis_over_single", "hiredis: cluster / single"),
                       ("cluster_wait1_over_hiredis", "cluster: WAIT 1 replica / no WAIT")):
        lines.append(f"  {label:38s} {'':7s} {'':15s} {_num(res.get(key + '_batch'), '.2f', 8)} {'':8s} {'':10s} "
                     f"{'':11s} {_num(res.get(key + '_ordinary'), '.2f', 8)}")
    lines += _per_primary_lines(res.get("per_primary") or {}, res["batch_n"])
    micro = res.get("clients_micro")
    if micro:
        from bench.redis_clients_micro import table  # noqa: PLC0415 - imports the scheduler's code

        lines += ["", *table(micro)]
    return lines


def _passes(values: Any, width: int) -> str:
    shown = " ".join(f"{v:,.0f}" for v in values or [] if isinstance(v, (int, float)))
    return f"{'(' + shown + ')' if shown else '':{width}s}"


def _per_primary_lines(pp: dict[str, Any], n: int) -> list[str]:
    if not pp:
        return []
    runs = [pp.get("one_queue", {}), pp.get("three_queues", {})]
    queues: dict[str, str] = pp.get("queues", {})
    first = next(iter(queues.items()), ("-", "-"))
    lines = ["", f"  per primary: cluster, hiredis, {n:,} tasks in ONE queue vs split over THREE queues on three "
                 f"primaries; CPU % of one core over the timed part",
             f"    {'':44s} {'1 queue':>12s} {'3 queues':>12s}",
             f"    {'queues (their primary)':44s} {first[0] + ' (' + first[1].removeprefix('redis_') + ')':>12s} "
             f"{'one on each':>12s}"]
    lines += [f"    ERROR: {run['error']}" for run in runs if "error" in run]

    def row(label: str, get: Any, fmt: str) -> None:
        lines.append(f"    {label:44s} " + " ".join(_num(get(r), fmt, 12) for r in runs))

    row("tasks/s", lambda r: r.get("throughput"), ",.0f")
    for name in ("scheduler", "worker", "producer"):
        row(f"{name} CPU %", lambda r, name=name: r.get("cpu_pct", {}).get(name), ".1f")
    roles = sorted(k for k in runs[0].get("cpu_pct", {}) if k.startswith("redis_"))
    for role in roles:
        kind = "primary" if role.startswith("redis_p") else "replica"
        row(f"{role} ({kind}) CPU %", lambda r, role=role: r.get("cpu_pct", {}).get(role), ".1f")
    row("Redis µs per task, busiest primary", lambda r: max(r.get("redis_usec_per_task", {}).values(), default=None),
        ".1f")
    row("its ceiling: tasks/s at 100% of its core",  # None: a primary whose CPU read 0 (tiny --quick runs)
        lambda r: min((v for v in r.get("primary_ceiling", {}).values() if v is not None), default=None), ",.0f")
    lines.append(f"    {'3 queues / 1 queue, tasks/s':44s} {_num(pp.get('three_over_one'), '.2f', 25)}")
    return lines


def hop_budget(results: Results) -> list[dict[str, Any]]:
    """Conveyor's ordinary path, per call (p50, µs): what no implementation can go under on this
    machine beside what the calls took. Both floors are measured in the scenario, after its timed
    part: a no-op gRPC server's round trip on the SDK's stream, and a Redis PING from Python. The
    floor adds one of each (a submit() runs one script, a result() of a finished task reads one
    record; by the time the results are read their tasks have mostly run), and "ours" is the rest:
    the SDK, the scheduler's handler and its Redis client beyond a bare round trip, and waits for
    a core (the floors are timed with the run's other processes idle; the calls are not)."""
    def got(key: str) -> float | None:
        return _get(results, "ordinary", "conveyor", key)

    stream_ms, ping_us = got("grpc_floor_p50_ms"), got("redis_ping_p50_us")
    if stream_ms is None or ping_us is None:
        return []
    rows = []
    for call, key in (("submit()", "submit_p50_ms"), ("result()", "result_p50_ms")):
        p50_ms = got(key)
        if p50_ms is not None:
            floor_us = 1000 * stream_ms + ping_us
            rows.append({"call": call, "grpc_stream_round_trip_us": 1000 * stream_ms, "redis_round_trip_us": ping_us,
                         "floor_us": floor_us, "call_p50_us": 1000 * p50_ms, "ours_us": 1000 * p50_ms - floor_us})
    return rows


BUDGET_LINES = [
    ("grpc_stream_round_trip_us", "gRPC stream round trip, no-op server", "measured"),
    ("redis_round_trip_us", "Redis round trip (PING)", "measured"),
    ("floor_us", "floor: one of each", "derived"),
    ("call_p50_us", "the call", "measured"),
    ("ours_us", "ours: the call - floor", "derived"),
]


def _budget_lines(rows: list[dict[str, Any]]) -> list[str]:
    if not rows:
        return []
    lines = ["", f"{'ordinary path, conveyor: per-hop budget, p50 µs':49s} {'':9s}"
                 + "".join(f"{row['call']:>10s}" for row in rows)]
    for key, label, how in BUDGET_LINES:
        lines.append(f"  {label:47s} {how:9s}" + "".join(f"{row[key]:10,.0f}" for row in rows))
    return lines


def write(doc: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2, sort_keys=False) + "\n")
