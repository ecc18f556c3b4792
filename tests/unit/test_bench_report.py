"""bench/report.py's cluster table prints whatever a quick run measured (a tiny run can read a
primary's CPU as 0, and so its ceiling as unknown) instead of failing the whole report."""

from __future__ import annotations

from bench import report


def test_per_primary_lines_take_a_primary_whose_ceiling_is_unknown() -> None:
    run = {"throughput": 900.0, "cpu_pct": {"scheduler": 50.0, "redis_p0": 10.0},
           "redis_usec_per_task": {"redis_p0": 20.0, "redis_p1": 0.0},
           "primary_ceiling": {"redis_p0": 50_000, "redis_p1": None}}
    pp = {"queues": {"scale-0": "redis_p0"}, "one_queue": run,
          "three_queues": {**run, "primary_ceiling": {"redis_p0": None}}, "three_over_one": 1.1}
    lines = report._per_primary_lines(pp, 500)
    ceiling = next(line for line in lines if "its ceiling" in line)
    assert "50,000" in ceiling and ceiling.rstrip().endswith("-")
