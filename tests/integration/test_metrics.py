"""Prometheus /metrics of real scheduler processes, scraped over HTTP and parsed by prometheus_client."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from conveyor import Call, Client
from tests.harness import ROOT, Cluster, Proc, free_port, wait_for

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(port: int) -> Samples:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def named(samples: Samples, name: str) -> list[float]:
    return [v for (n, _), v in samples.items() if n == name]


def buckets(samples: Samples, histogram: str, **labels: str) -> dict[float, float]:
    """Upper bound -> cumulative count, of the histogram's series with these labels."""
    out = {}
    for (name, pairs), v in samples.items():
        found = dict(pairs)
        le = found.pop("le", None)
        if name == histogram + "_bucket" and le is not None and found == labels:
            out[float(le)] = v
    return out


def families(port: int) -> dict[str, Metric]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        return {f.name: f for f in text_string_to_metric_families(resp.read().decode())}


def start(cluster: Cluster, redis_url: str, name: str, *args: str) -> tuple[Proc, str, int]:
    port = free_port()
    proc, target = cluster.scheduler(redis_url, "--metrics-port", str(port), "--scheduler-id", name, *args,
                                     name=name)
    wait_for(lambda: f"metrics on http://127.0.0.1:{port}/metrics" in proc.output(), what="the metrics line")
    return proc, target, port


def test_depth_gauges_and_otel_counters(cluster: Cluster, redis_url: str) -> None:
    _, target, port = start(cluster, redis_url, "m1")
    with Client(target) as client:
        for i in range(3):
            client.submit("m.queued", [i])
        client.submit("m.queued", [9], priority=7)
        for i in range(2):
            client.submit("m.later", [i], countdown=3600)

    def settled() -> Samples | None:
        s = scrape(port)
        return s if value(s, "conveyor_scheduler_beat_leader", replica="m1") == 1 else None

    s = wait_for(settled, what="m1 to lead the beat")
    assert value(s, "conveyor_fleet_queue_tasks", queue="default", state="queued") == 4  # as ListQueues says
    assert value(s, "conveyor_fleet_queue_tasks", queue="default", state="scheduled") == 2
    assert value(s, "conveyor_fleet_queue_tasks", queue="default", state="active") == 0
    assert value(s, "conveyor_fleet_queue_ready_tasks", queue="default", priority="0") == 3
    assert value(s, "conveyor_fleet_queue_ready_tasks", queue="default", priority="7") == 1
    assert value(s, "conveyor_fleet_queues") == 1
    age = value(s, "conveyor_fleet_queue_oldest_age_seconds", queue="default")
    assert age is not None and 0 <= age < 60
    common = {"messaging_system": "conveyor", "messaging_destination_name": "default"}
    assert value(s, "conveyor_tasks_submitted_total", conveyor_task_name="m.queued", **common) == 4
    assert value(s, "conveyor_tasks_submitted_total", conveyor_task_name="m.later", **common) == 2


def test_task_counters_rise_and_the_fleet_percentiles_follow_the_activity(cluster: Cluster, redis_url: str,
                                                                          tmp_path: Path) -> None:
    _, target, port = start(cluster, redis_url, "m1")
    cluster.worker(target, "tests.apps.flaky:app")
    q = {"messaging_system": "conveyor", "messaging_destination_name": "default"}
    with Client(target) as client:
        assert [h.result(timeout=30) for h in [client.submit("tel.add", [i, 1]) for i in range(5)]] == [1, 2, 3, 4, 5]
        flaky = client.submit("tel.flaky", [str(tmp_path / "marker")], max_retries=1, retry_backoff=0.05)
        assert flaky.result(timeout=30) is None  # failed once, retried, succeeded
        later = client.submit("tel.add", [0, 0], countdown=600)
        client.cancel(later.id)

        def completed(n: int) -> Samples:  # (the acks are counted before their results can be read)
            def counted() -> Samples | None:
                s = scrape(port)
                done = value(s, "conveyor_tasks_completed_total", conveyor_task_outcome="succeeded", **q)
                return s if done == n and value(s, "conveyor_scheduler_beat_leader", replica="m1") == 1 else None

            return wait_for(counted, what=f"{n} successes counted")

        first = completed(6)
        fams = families(port)
        assert fams["conveyor_tasks_submitted"].type == fams["conveyor_tasks_completed"].type == "counter"
        assert fams["conveyor_tasks_retried"].type == "counter"
        assert "conveyor_task_wait_duration_seconds" not in fams  # OTLP only; /metrics has the fleet percentiles
        assert value(first, "conveyor_tasks_submitted_total", conveyor_task_name="tel.add", **q) == 6
        assert value(first, "conveyor_tasks_submitted_total", conveyor_task_name="tel.flaky", **q) == 1
        assert value(first, "conveyor_tasks_completed_total", conveyor_task_outcome="cancelled", **q) == 1
        assert value(first, "conveyor_tasks_retried_total", **q) == 1
        for gauge in ("conveyor_fleet_queue_wait_seconds", "conveyor_fleet_queue_run_seconds"):
            p50 = value(first, gauge, queue="default", quantile="0.5")
            p95 = value(first, gauge, queue="default", quantile="0.95")
            assert p50 is not None and p95 is not None and 0 <= p50 <= p95 < 30, gauge
        assert value(first, "conveyor_fleet_queue_paused", queue="default") == 0

        assert [h.result(timeout=30) for h in client.submit_many([Call("tel.add", [i, 0]) for i in range(4)])] == [
            0, 1, 2, 3]
        second = completed(10)
    assert value(second, "conveyor_tasks_submitted_total", conveyor_task_name="tel.add", **q) == 10
    assert value(second, "conveyor_tasks_retried_total", **q) == 1


def test_workers_online_and_in_flight_come_from_the_registry(cluster: Cluster, redis_url: str,
                                                              tmp_path: Path) -> None:
    _, target, port = start(cluster, redis_url, "m1", "--heartbeat-interval", "0.5")
    for _ in range(2):
        cluster.worker(target, concurrency=2)
    gate = tmp_path / "gate"
    with Client(target) as client:
        held = [client.submit("t.wait_file", [str(gate), i]) for i in range(3)]
        wait_for(lambda: all(h.state.name == "ACTIVE" for h in held), what="three tasks running")

        def reported() -> Samples | None:  # in flight as of the workers' heartbeats
            s = scrape(port)
            return s if value(s, "conveyor_fleet_tasks_in_flight") == 3 else None

        s = wait_for(reported, what="the heartbeats to report three tasks running")
        assert value(s, "conveyor_fleet_workers_online") == 2
        gate.touch()
        assert client.results(held, timeout=30) == [0, 1, 2]


def test_two_replicas_export_fleet_gauges_once(cluster: Cluster, redis_url: str) -> None:
    _, target, port1 = start(cluster, redis_url, "r1")
    _, _, port2 = start(cluster, redis_url, "r2")
    with Client(target) as client:
        for i in range(5):
            client.submit("m.queued", [i])

    def one_leader() -> tuple[Samples, Samples] | None:
        a, b = scrape(port1), scrape(port2)
        leaders = named(a, "conveyor_scheduler_beat_leader") + named(b, "conveyor_scheduler_beat_leader")
        return (a, b) if sorted(leaders) == [0, 1] else None

    a, b = wait_for(one_leader, what="exactly one beat leader")
    queued = [value(x, "conveyor_fleet_queue_tasks", queue="default", state="queued") for x in (a, b)]
    assert sorted(queued, key=lambda v: v is not None) == [None, 5]  # one exports, so sum() == 5
    leader = a if value(a, "conveyor_scheduler_beat_leader", replica="r1") == 1 else b
    assert named(leader, "conveyor_fleet_queues") == [1]


def listening_ports(pid: int) -> set[int]:
    """TCP ports process `pid` listens on (its socket inodes matched in /proc/net/tcp*)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    ports = set()
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def test_metrics_port_zero_serves_nothing(cluster: Cluster, redis_url: str) -> None:
    grpc_port = free_port()
    proc, _ = cluster.scheduler(redis_url, "--metrics-port", "0", port=grpc_port)
    assert "metrics on" not in proc.output()
    assert listening_ports(proc.popen.pid) == {grpc_port}


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "conveyor_scheduler", *args], capture_output=True, text=True,
                          timeout=60, cwd=ROOT, env=env, check=False)


def test_bad_metrics_port_is_a_usage_error(redis_url: str) -> None:
    for bad in ("abc", "70000", "-1"):
        done = run_cli("--port", str(free_port()), "--redis-url", redis_url, "--metrics-port", bad)
        assert done.returncode == 2, done.stderr
        assert "--metrics-port" in done.stderr
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        taken = held.getsockname()[1]
        done = run_cli("--port", str(free_port()), "--redis-url", redis_url, "--metrics-port", str(taken))
    assert done.returncode == 2, done.stderr
    assert "--metrics-port" in done.stderr and str(taken) in done.stderr


def test_metrics_are_on_by_default_at_9464() -> None:
    done = run_cli("--help")
    assert done.returncode == 0, done.stderr
    assert "[default: 9464;" in " ".join(done.stdout.split())
