"""What a Redis Cluster primary failover loses, with and without --redis-wait-replicas, and
what WAIT costs: `python -m bench.failover [--rounds N]`.

Each round is tests/cluster/failover_run.py's (the test's own code): a private 3+3 cluster,
two scheduler replicas, three workers, four producers, 2,000 tasks of ~30 ms on a queue whose
primary is SIGKILLed while about 1,500 are queued or running; its replica takes over, the
killed node comes back as the new replica, the round finishes and everything is read through
the API. Faults: "kill" (the SIGKILL alone, while submits and acks flow) and "lag" (the
primary's replication link is cut first, and the kill comes once the primary holds writes its
replica lacks). Every round runs without WAIT and with WAIT 1, `--rounds` times over.

Then WAIT's cost on a healthy cluster, same processes, same run, the modes alternating
`--repeats` times: tasks/s of 3,000 no-op tasks from the first submit to the last confirmed
result, and the latency of single-task submits made one after another.

Prints a table per part and writes bench/results/failover.json (or --out). Exits 1 when a
WAIT 1 round lost an acknowledged submit or result, or any round recorded a wrong result.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `tests.*` from any working directory
    sys.path.insert(0, str(ROOT))
for _name in [k for k in os.environ if k.startswith("OTEL_")]:  # no exporter in any process
    del os.environ[_name]
os.environ.pop("CONVEYOR_REDIS_URL", None)

from tests.cluster.failover_run import Outcome, Round, measure_throughput, run_round  # noqa: E402
from tests.harness import Cluster  # noqa: E402
from tests.redis_cluster import RedisClusterServers  # noqa: E402

DEFAULT_OUT = ROOT / "bench" / "results" / "failover.json"
COLUMNS = [("round", "round"), ("WAIT", "wait_replicas"), ("fault", "fault"), ("submitted", "submitted"),
           ("in flight", "in_flight_at_kill"), ("unrepl. B", "unreplicated_bytes"),
           ("acked while cut", "acknowledged_while_cut"), ("lost submits", "lost_submits"),
           ("lost results", "lost_results"), ("read, reverted", "observed_lost"), ("ran twice", "ran_twice"),
           ("failover s", "failover_s"), ("1st submit s", "first_submit_s"),
           ("read before s", "read_before_kill_s"), ("read after s", "read_after_failover_s"), ("round s", "round_s")]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m bench.failover", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=1, help="times each (fault, WAIT) pair runs (1)")
    ap.add_argument("--faults", default="kill,lag", help="comma-separated: kill, lag (both)")
    ap.add_argument("--tasks", type=int, default=2000, help="tasks per failover round (2000)")
    ap.add_argument("--throughput-tasks", type=int, default=3000, help="no-op tasks per throughput run (3000)")
    ap.add_argument("--repeats", type=int, default=3, help="throughput runs per WAIT mode, alternating (3; 0: skip)")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON report path")
    ap.add_argument("--keep-logs", action="store_true", help="keep the processes' logs (kept anyway on failure)")
    return ap.parse_args(argv)


def table(rows: list[dict[str, Any]], columns: list[tuple[str, str]]) -> str:
    cells: list[list[str]] = [[title for title, _ in columns]]
    cells += [[str(row.get(key, "")) for _, key in columns] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join([lines[0], "  ".join("-" * w for w in widths), *lines[1:]])


def failover_rounds(args: argparse.Namespace, work: Path, log: Any) -> list[Outcome]:
    faults = [f.strip() for f in args.faults.split(",") if f.strip()]
    outcomes = []
    number = 0
    for _ in range(args.rounds):
        for fault in faults:
            for wait in (0, 1):
                number += 1
                folder = work / f"round-{number}-{fault}-wait{wait}"
                folder.mkdir(parents=True)
                with RedisClusterServers(folder / "redis").start() as redis:
                    procs = Cluster(folder)
                    try:
                        out = run_round(redis, procs, folder / "work", Round(wait, fault, tasks=args.tasks),
                                        log=lambda line, n=number: log(f"  round {n}: {line}"))
                    finally:
                        procs.stop_all()
                log(out.summary())
                outcomes.append(out)
    return outcomes


def throughput(args: argparse.Namespace, work: Path, log: Any) -> list[dict[str, float]]:
    runs = []
    with RedisClusterServers(work / "throughput-redis").start() as redis:
        for repeat in range(args.repeats):
            for wait in (0, 1):
                folder = work / f"throughput-{repeat}-wait{wait}"
                folder.mkdir(parents=True)
                procs = Cluster(folder)
                try:
                    cfg = Round(wait, tasks=args.throughput_tasks, task_seconds=0, concurrency=8)
                    res = measure_throughput(redis, procs, folder / "work", cfg)
                finally:
                    procs.stop_all()
                redis.flushall()
                log(f"  throughput WAIT {wait}: {res}")
                runs.append(res)
    return runs


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="conveyor-failover-"))
    started = time.monotonic()
    load_before = os.getloadavg()

    def log(text: str) -> None:
        print(text, flush=True)

    log(f"bench.failover: {args.rounds} round(s) of {args.faults} x WAIT 0/1, {args.repeats} throughput repeat(s); "
        f"{os.cpu_count()} CPUs, load average {load_before[0]:.2f}; logs in {work}")
    outcomes = failover_rounds(args, work, log)
    runs = throughput(args, work, log) if args.repeats else []

    rows = [{"round": n, **o.figures()} for n, o in enumerate(outcomes, 1)]
    problems = []
    for n, o in enumerate(outcomes, 1):
        if o.round.wait_replicas and (o.lost_submits or o.lost_results):
            problems.append(f"round {n} (WAIT {o.round.wait_replicas}, {o.round.fault}) lost "
                            f"{len(o.lost_submits)} acknowledged submits and {len(o.lost_results)} confirmed results")
        if o.wrong or o.extra_tasks or o.unacknowledged_keys or not o.schedulers_serving:
            problems.append(f"round {n}: {len(o.wrong)} wrong, {len(o.extra_tasks)} extra tasks, "
                            f"{len(o.unacknowledged_keys)} keys never acknowledged, schedulers serving: "
                            f"{o.schedulers_serving}")
    cost: dict[str, Any] = {}
    for wait in (0, 1):
        mine = [r for r in runs if r["wait_replicas"] == wait]
        if mine:
            cost[f"wait{wait}"] = {"tasks_per_s": statistics.median(r["tasks_per_s"] for r in mine),
                                   "submit_p50_ms": statistics.median(r["submit_p50_ms"] for r in mine),
                                   "submit_p99_ms": statistics.median(r["submit_p99_ms"] for r in mine),
                                   "runs": mine}
    if len(cost) == 2:
        cost["throughput_cost_pct"] = round(100 * (1 - cost["wait1"]["tasks_per_s"] / cost["wait0"]["tasks_per_s"]), 1)
        cost["submit_p50_added_ms"] = round(cost["wait1"]["submit_p50_ms"] - cost["wait0"]["submit_p50_ms"], 2)

    doc: dict[str, Any] = {"rounds": rows, "throughput": cost, "problems": problems, "meta": {
        "command": " ".join(["python -m bench.failover", *(argv if argv is not None else sys.argv[1:])]),
        "started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "cpus": os.cpu_count(),
        "load_average_before": load_before, "load_average_after": os.getloadavg(),
        "duration_s": round(time.monotonic() - started, 1)}}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2) + "\n")

    print()
    print(table(rows, COLUMNS))
    print("\n".join([
        "lost submits: acknowledged, gone at the end. lost results: confirmed to the worker before the kill, not that "
        "record at the end.",
        "read, reverted: read SUCCEEDED through GetResults before the kill, not that record at the end (WAIT does "
        "not hold reads back).",
        "ran twice: keys whose task ran to completion twice. 1st submit s: SIGKILL to the first acknowledged submit "
        "after it.",
        "read before/after s: GetResults of every acknowledged task just before the kill (lag: replica cut off), "
        "and of those read SUCCEEDED then, right after the failover."]))
    if cost:
        print()
        print(table([{"WAIT": w[-1], **{k: v for k, v in c.items() if k != "runs"},
                      "all tasks/s": " ".join(str(r["tasks_per_s"]) for r in c["runs"])}
                     for w, c in cost.items() if w.startswith("wait")],
                    [("WAIT", "WAIT"), ("tasks/s (median)", "tasks_per_s"), ("all tasks/s", "all tasks/s"),
                     ("submit p50 ms", "submit_p50_ms"), ("submit p99 ms", "submit_p99_ms")]))
        if "throughput_cost_pct" in cost:
            print(f"WAIT 1 costs {cost['throughput_cost_pct']}% of the throughput and adds "
                  f"{cost['submit_p50_added_ms']} ms to a submit's p50")
    for problem in problems:
        print(f"PROBLEM: {problem}")
    print(f"\n{doc['meta']['duration_s']:.0f}s; load average {load_before[0]:.2f} before, "
          f"{doc['meta']['load_average_after'][0]:.2f} after; report in {args.out}")
    if problems or args.keep_logs:
        print(f"logs kept in {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
