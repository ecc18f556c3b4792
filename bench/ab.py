"""This checkout against another, one scenario in interleaved runs: `python -m bench.ab OTHER`.

    python -m bench.ab /work/base --pairs 6                 # batch, 6 pairs (about 2.5 minutes)
    python -m bench.ab /work/base --only ordinary --key throughput

A change's cost is a few percent, while this machine's other load moves one run's figure by 20%
and more. So the two checkouts run alternately (in ABBA order, so neither always goes first),
each with its own virtualenv (OTHER/.venv, as `make install` leaves it), and the report gives
each pair's ratio and their median, the mean of each side's better half of runs and the ratio
of the two best runs: a disturbance only ever slows a run down, so the best runs are the least
disturbed ones. Each run is an ordinary `python -m bench --only SCENARIO --systems conveyor`
with every task's result verified.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent


def run(checkout: Path, scenario: str, key: str, out: Path) -> float:
    """One bench run of `scenario` in `checkout`; returns its Conveyor figure `key`."""
    python = checkout / ".venv" / "bin" / "python"
    done = subprocess.run([str(python), "-m", "bench", "--only", scenario, "--systems", "conveyor", "--out", str(out)],
                          check=False, cwd=checkout, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"{checkout}: bench failed (rc {done.returncode}):\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    return float(json.loads(out.read_text())["scenarios"][scenario]["conveyor"][key])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("other", type=Path, help="the other checkout (with its .venv)")
    ap.add_argument("--only", default="batch", help="one scenario (batch)")
    ap.add_argument("--key", default="throughput", help="the figure compared, higher is better (throughput)")
    ap.add_argument("--pairs", type=int, default=6)
    args = ap.parse_args()
    sides = {"this": HERE, "other": args.other.resolve()}
    figures: dict[str, list[float]] = {"this": [], "other": []}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.pairs):
            order = ("this", "other") if i % 2 == 0 else ("other", "this")
            for side in order:
                figures[side].append(run(sides[side], args.only, args.key, Path(tmp) / f"{side}-{i}.json"))
            this, other = figures["this"][-1], figures["other"][-1]
            print(f"pair {i + 1}: this {this:,.0f}  other {other:,.0f}  ratio {this / other:.3f}", flush=True)
    ratios = [a / b for a, b in zip(figures["this"], figures["other"], strict=True)]
    best = max(figures["this"]) / max(figures["other"])
    top = {side: statistics.mean(sorted(runs)[len(runs) // 2:]) for side, runs in figures.items()}
    print(f"{args.only} {args.key}: median pair ratio {statistics.median(ratios):.3f}; "
          f"best half's mean: this {top['this']:,.0f}, other {top['other']:,.0f}, "
          f"ratio {top['this'] / top['other']:.3f}; "
          f"best run ratio {best:.3f} (this = {HERE}, other = {sides['other']})")


if __name__ == "__main__":
    main()
