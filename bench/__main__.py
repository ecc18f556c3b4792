"""`python -m bench` (`make bench`): Conveyor and Celery 5 measured in one run on this machine.

    python -m bench                                  # everything, both systems (< 15 min on 2 cores)
    python -m bench --quick                          # tiny N, for development (< 1 min)
    python -m bench --only latency,depth --systems conveyor
    python -m bench --only latency,single_producer --systems conveyor --profile /tmp/prof
    python -m bench --only ordinary,many_producers   # the ordinary path of issue 17
    python -m bench --only cluster --systems conveyor  # one Redis vs a Redis Cluster (not in the default set)

Writes bench/results/latest.json (or --out) and prints a table with the Conveyor/Celery
ratios, each target (issues 6, 15, 16 and 17) as PASS/FAIL, and the ordinary path's per-hop
budget. Exits 1 when a task was lost or wrong, or a scenario could not run; a missed
performance target is reported, not an error.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `tests.harness` and `bench` from any working directory
    sys.path.insert(0, str(ROOT))
for _name in [k for k in os.environ if k.startswith("OTEL_")]:  # no exporter in any process
    del os.environ[_name]
os.environ.pop("CONVEYOR_REDIS_URL", None)

from bench import report  # noqa: E402
from bench.common import FULL, QUICK, Context  # noqa: E402
from bench.scenarios import DEFAULT, SCENARIOS, run_system, runs_on  # noqa: E402

SYSTEMS = ("conveyor", "conveyor-tls", "celery")
"""conveyor-tls: Conveyor with TLS and a token on every call (single_producer, batch and latency only)."""
DEFAULT_OUT = ROOT / "bench" / "results" / "latest.json"


def _csv(text: str, allowed: tuple[str, ...], what: str) -> list[str]:
    items = [t.strip() for t in text.split(",") if t.strip()]
    bad = [t for t in items if t not in allowed]
    if bad or not items:
        raise SystemExit(f"--{what}: choose from {', '.join(allowed)} (got {text!r})")
    return [a for a in allowed if a in items]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="tiny N: checks the harness, not the targets")
    ap.add_argument("--only", default=",".join(DEFAULT),
                    help=f"comma-separated scenarios of {', '.join(SCENARIOS)} (default: all but cluster)")
    ap.add_argument("--systems", default=",".join(SYSTEMS), help="comma-separated systems (default: both)")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON report path")
    ap.add_argument("--conveyor-workers", type=int, default=1, help="Conveyor worker processes (1)")
    ap.add_argument("--conveyor-concurrency", type=int, default=32, help="slots per Conveyor worker (32)")
    ap.add_argument("--conveyor-prefetch", type=int, default=512,
                    help="leases a Conveyor worker holds beyond its slots (512; Celery prefetches too)")
    ap.add_argument("--celery-pool", default="",
                    help="POOL:CONCURRENCY to skip the calibration, e.g. prefork:2 (default: calibrate)")
    ap.add_argument("--profile", type=Path, default=None,
                    help="py-spy the scheduler and a worker (in ordinary, this producer too) during single_producer, "
                         "batch, latency, ordinary, many_producers and workflows' timed chords into this folder")
    ap.add_argument("--profile-native", action="store_true",
                    help="with --profile: native frames too (grpc, hiredis); pauses the process per sample")
    ap.add_argument("--keep-logs", action="store_true", help="keep the processes' logs (kept anyway on failure)")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    scenarios = _csv(args.only, SCENARIOS, "only")
    systems = _csv(args.systems, SYSTEMS, "systems")
    sizes = QUICK if args.quick else FULL
    work = Path(tempfile.mkdtemp(prefix="conveyor-bench-"))
    ctx = Context(sizes=sizes, work_dir=work, profile_dir=args.profile, profile_native=args.profile_native,
                  log=lambda text: print(text, flush=True))
    started = time.monotonic()
    load_before = os.getloadavg()
    ctx.log(f"conveyor bench{' --quick' if args.quick else ''}: {', '.join(scenarios)} on {', '.join(systems)}; "
            f"{os.cpu_count()} CPUs, load average {load_before[0]:.2f}; logs in {work}")
    doc: dict[str, Any] = {"scenarios": {name: {} for name in scenarios}, "meta": {
        "command": " ".join(["python -m bench", *(argv if argv is not None else sys.argv[1:])]),
        "quick": args.quick, "started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "cpus": os.cpu_count(), "python": platform.python_version(), "load_average_before": load_before,
        "sizes": sizes.__dict__, "systems": {}, "profiled": args.profile is not None}}

    for system in systems:
        runner = _runner(system, ctx, args, doc)
        if runner is None:
            continue
        try:
            for name, res in run_system(ctx, runner, scenarios).items():
                doc["scenarios"][name][system] = res
            doc["meta"]["systems"][system] = runner.describe()
        finally:
            runner.close()

    doc["scenarios"] = {k: v for k, v in doc["scenarios"].items() if v}
    doc["targets"] = report.judge(doc["scenarios"])
    doc["hop_budget"] = report.hop_budget(doc["scenarios"])
    doc["verification_problems"] = report.verification(doc["scenarios"])
    doc["meta"]["duration_s"] = round(time.monotonic() - started, 1)
    doc["meta"]["load_average_after"] = os.getloadavg()
    doc["meta"]["notes"] = ctx.notes
    report.write(doc, args.out)
    print()
    print(report.table(doc))
    for note in ctx.notes:
        print(f"note: {note}")
    print(f"\n{doc['meta']['duration_s']:.0f}s; load average {load_before[0]:.2f} before, "
          f"{doc['meta']['load_average_after'][0]:.2f} after; report in {args.out}")
    failed = bool(doc["verification_problems"])
    if failed or args.keep_logs:
        print(f"logs kept in {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if failed else 0


def _runner(system: str, ctx: Context, args: argparse.Namespace, doc: dict[str, Any]) -> Any:
    if system in ("conveyor", "conveyor-tls"):
        from bench.conveyor_runner import ConveyorRunner  # noqa: PLC0415

        return ConveyorRunner(ctx, args.conveyor_workers, args.conveyor_concurrency, args.conveyor_prefetch,
                              secure=system == "conveyor-tls")
    from bench import celery_runner  # noqa: PLC0415

    missing = celery_runner.available()
    if missing:
        ctx.notes.append(f"celery skipped: {missing}")
        for name, res in doc["scenarios"].items():
            if runs_on(system, name):
                res["celery"] = {"skipped": missing}
        return None
    pool, _, conc = args.celery_pool.partition(":")
    return celery_runner.CeleryRunner(ctx, pool or None, int(conc) if conc else None)


if __name__ == "__main__":
    sys.exit(main())
