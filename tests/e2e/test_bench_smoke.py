"""The benchmark harness (`make bench`) stays runnable: `python -m bench --quick` on tiny N.

Only the Conveyor side runs here: Celery is installed by `make bench`, not `make install`.
The performance targets are not checked (tiny N on a shared machine says nothing about them);
the report's shape and the verification of every task are.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from bench.celery_runner import budgeted_batch  # importable without Celery installed

ROOT = Path(__file__).resolve().parents[2]
FIELDS = {
    "single_producer": ("throughput", "enqueue_rate", "send_throughput", "send_enqueue_rate", "cpu_steal_pct",
                        "grpc_floor_p50_ms", "grpc_relay_floor_p50_ms"),
    "batch": ("throughput", "cpu_steal_pct"),
    "latency": ("p50_ms", "p99_ms", "cpu_steal_pct"),
    "ordinary": ("throughput", "submit_phase_rate", "submit_p50_ms", "submit_p99_ms", "result_p50_ms", "result_p99_ms",
                 "send_throughput", "send_result_p50_ms", "cpu_ms_per_task_total", "grpc_floor_p50_ms",
                 "redis_ping_p50_us", "cpu_steal_pct"),
    "many_producers": ("throughput", "submit_phase_rate", "submit_p50_ms", "result_p50_ms", "cpu_ms_per_task_total",
                       "cpu_steal_pct"),
    "depth": ("rate_1k", "rate_1m", "redis_bytes_per_task", "rss_mib_1k", "rss_mib_1m", "cpu_steal_pct"),
    "fan_in": ("cpu_pct", "rss_mib", "cpu_steal_pct"),
    "dashboard": ("page_p95_max_ms", "p95_ms_overview", "p95_ms_task", "sse_cpu_pct", "idle_cpu_pct", "sse_events",
                  "cpu_steal_pct"),
    "cpu_bound": ("threads_throughput", "processes_throughput", "noop_processes_throughput", "speedup",
                  "cpu_steal_pct"),
    "workflows": ("chord_ack_to_callback_ms", "chord_ack_to_release_ms", "chord_ack_to_lease_ms", "chord_seconds",
                  "redis_bytes_per_node", "cpu_ms_per_task_total", "chain_steps_per_s", "chain_result_steps_per_s",
                  "small_chord_seconds", "small_chord_result_seconds", "cpu_steal_pct"),
}


def test_bench_quick_runs_conveyor_and_verifies_every_task(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    done = subprocess.run([sys.executable, "-m", "bench", "--quick", "--systems", "conveyor", "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=130, check=False)
    assert done.returncode == 0, f"bench --quick failed:\n{done.stdout[-5000:]}\n{done.stderr[-3000:]}"
    doc = json.loads(out.read_text())
    assert doc["meta"]["quick"] is True
    assert set(doc["scenarios"]) == set(FIELDS)
    for scenario, fields in FIELDS.items():
        res = doc["scenarios"][scenario]["conveyor"]
        assert "error" not in res, (scenario, res)
        for field in fields:
            assert isinstance(res[field], (int, float)) and res[field] >= 0, (scenario, field, res)
        assert res["tasks"] > 0 and res["verified"] == res["tasks"], (scenario, res)
    cpu = {name: doc["scenarios"][name]["conveyor"]["cpu_ms_per_task"] for name in ("ordinary", "many_producers")}
    assert set(cpu["ordinary"]) == {"producer", "scheduler", "worker", "redis"}, cpu  # every process of the run
    assert set(cpu["many_producers"]) == {"producers", "scheduler", "worker", "redis"}, cpu
    assert cpu["many_producers"]["producers"] > 0, cpu  # the producer processes were metered while alive
    assert [row["call"] for row in doc["hop_budget"]] == ["submit()", "result()"], doc["hop_budget"]
    assert "per-hop budget" in done.stdout
    depth = doc["scenarios"]["depth"]["conveyor"]
    assert depth["rate_1k"] > 0 and depth["rate_1m"] > 0 and depth["redis_bytes_per_task"] > 0
    flows = doc["scenarios"]["workflows"]["conveyor"]
    assert flows["redis_bytes_per_node"] > 0 and flows["chain_steps_per_s"] > 0, flows
    # the callback starts after the last header's ack, and is submitted before it is leased
    assert 0 <= flows["chord_ack_to_release_ms"] <= flows["chord_ack_to_lease_ms"] <= flows["chord_ack_to_callback_ms"]
    assert doc["verification_problems"] == []
    assert {t["result"] for t in doc["targets"] if t["scenario"] == "cluster"} == {"n/a"}  # not in the default set
    judged = {t["target"]: t["result"] for t in doc["targets"] if t["scenario"] != "cluster"}
    assert judged["conveyor throughput >= 5x celery's"] == "n/a"  # no Celery in this run
    assert judged["send() + flush(): throughput >= 5x celery's"] == "n/a"
    others = [target for target in judged if "celery" in target or "TLS" in target]  # need another system's run
    assert others and all(judged[target] == "n/a" for target in others)
    assert all(result in ("PASS", "FAIL") for target, result in judged.items() if target not in others)
    assert "conv/cel" in done.stdout  # the table was printed
    assert "every task's result checked: all right" in done.stdout


def test_bench_quick_runs_conveyor_over_tls_with_a_token_beside_plaintext(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    done = subprocess.run([sys.executable, "-m", "bench", "--quick", "--systems", "conveyor,conveyor-tls",
                           "--only", "batch,latency", "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=100, check=False)
    assert done.returncode == 0, f"bench --quick failed:\n{done.stdout[-5000:]}\n{done.stderr[-3000:]}"
    doc = json.loads(out.read_text())
    for scenario in ("batch", "latency"):
        res = doc["scenarios"][scenario]["conveyor-tls"]
        assert res["tasks"] > 0 and res["verified"] == res["tasks"], (scenario, res)
    judged = {t["target"]: t["result"] for t in doc["targets"] if "TLS" in t["target"]}
    assert len(judged) == 3 and all(result in ("PASS", "FAIL") for result in judged.values()), judged


def test_bench_quick_cluster_scenario_compares_clients_on_one_redis_and_a_cluster(tmp_path: Path) -> None:
    """`--only cluster` (not in the default set): every variant's batch and ordinary runs, the
    per-primary runs and the Redis clients' micro-benchmark, on tiny N; every task verified."""
    out = tmp_path / "bench.json"
    done = subprocess.run([sys.executable, "-m", "bench", "--quick", "--only", "cluster", "--systems", "conveyor",
                           "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=150, check=False)
    assert done.returncode == 0, f"bench --quick failed:\n{done.stdout[-5000:]}\n{done.stderr[-3000:]}"
    doc = json.loads(out.read_text())
    res = doc["scenarios"]["cluster"]["conveyor"]
    assert "error" not in res, res.get("error")
    assert res["tasks"] > 0 and res["verified"] == res["tasks"], (res["tasks"], res["verified"])
    assert set(res["variants"]) == {"single_hiredis", "single_redis_py", "cluster_hiredis", "cluster_redis_py",
                                    "cluster_hiredis_wait1"}
    for key, variant in res["variants"].items():
        summary = variant["summary"]
        for field in ("batch_throughput", "ordinary_throughput", "ordinary_submit_p50_ms",
                      "batch_scheduler_cpu_ms_per_task", "batch_vs_single_hiredis", "ordinary_vs_single_hiredis"):
            assert isinstance(summary[field], float) and summary[field] > 0, (key, field, summary)
        assert summary["completions_on"], (key, summary)
        if variant["topology"] == "cluster":  # every Redis node metered on its own
            assert {"redis_p0", "redis_p1", "redis_p2", "redis_r0"} <= set(summary["batch_cpu_ms_per_task"]), summary
    # FastCluster publishes each queue's completions on its shard channel
    assert res["variants"]["cluster_hiredis"]["summary"]["completions_on"] == ["cv:{q:default}:done"]
    for kind in ("batch", "ordinary"):
        assert res[f"cluster_redis_py_over_hiredis_{kind}"] > 0
        assert res[f"cluster_wait1_over_hiredis_{kind}"] > 0
    per_primary = res["per_primary"]
    assert sorted(per_primary["queues"].values()) == ["redis_p0", "redis_p1", "redis_p2"], per_primary["queues"]
    for run in ("one_queue", "three_queues"):
        assert per_primary[run]["throughput"] > 0 and per_primary[run]["cpu_pct"]["scheduler"] >= 0, per_primary
    assert len(per_primary["three_queues"]["redis_usec_per_task"]) == 3, per_primary
    micro = res["clients_micro"]
    assert micro["errors"] == {}, micro["errors"]
    for family, row in micro["clients"].items():
        if "skipped" in row:  # an optional library this machine could not install
            assert family in ("coredis", "valkey-glide"), (family, row)
            continue
        for topology in ("single", "cluster"):
            assert row[topology]["calls_per_s"] > 0 and row[topology]["cpu_us_per_call"] > 0, (family, row)
    assert {"FastRedis", "FastCluster"} == {micro["clients"]["ours"][t]["client"] for t in ("single", "cluster")}
    judged = {t["target"]: t["result"] for t in doc["targets"] if t["scenario"] == "cluster"}
    assert len(judged) == 2 and all(result in ("PASS", "FAIL") for result in judged.values()), judged
    for text in ("cluster: redis-py / hiredis (15% rule)", "per primary:", "Redis clients: EVALSHA submit.lua"):
        assert text in done.stdout, text
    assert "every task's result checked: all right" in done.stdout


def test_script_cost_measures_each_hot_path_script() -> None:
    done = subprocess.run([sys.executable, "-m", "bench.script_cost", "-n", "2000", "--batch", "500", "--rounds", "1"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    cost = json.loads(done.stdout.strip().splitlines()[-1])["redis_usec_per_task"]
    assert set(cost) == {"submit", "claim", "ack", "total"}
    assert all(cost[phase] > 0 for phase in ("submit", "claim", "ack")), cost


def test_celery_batch_keeps_to_its_time_budget() -> None:
    assert budgeted_batch(100_000, 1000, 0.0, 150) == 100_000  # --celery-pool: no calibration
    assert budgeted_batch(100_000, 1000, 900.0, 150) == 100_000  # fast enough for all of it
    assert budgeted_batch(100_000, 1000, 356.0, 150) == 53_000  # 150 s' worth, whole batches
    assert budgeted_batch(100_000, 1000, 50.0, 150) == 20_000  # never under a fifth
