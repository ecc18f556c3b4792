"""compose.yaml's `cluster` profile, run here without Docker: its init script against six local
nodes, and its node configuration on this machine's redis-server."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import redis

from conveyor_scheduler.embedded_redis import find_redis_server
from tests.harness import ROOT, free_port, pings, wait_for
from tests.redis_cluster import RedisClusterServers

INIT = ROOT / "deploy" / "redis-cluster-init.sh"


def test_the_init_script_creates_the_cluster_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cluster = RedisClusterServers(tmp_path)
    runs: list[subprocess.CompletedProcess[str]] = []

    def init(*args: str, timeout: float) -> None:  # in place of the harness' redis-cli --cluster create
        nodes = " ".join(n.addr for n in cluster.nodes)
        runs.append(subprocess.run(["sh", str(INIT)], env={"PATH": "/usr/bin:/bin", "REDIS_CLUSTER_NODES": nodes},
                                   capture_output=True, text=True, timeout=timeout, check=False))
        assert runs[-1].returncode == 0, runs[-1].stdout + runs[-1].stderr

    monkeypatch.setattr(cluster, "_cli", init)
    with cluster.start():  # waits until healthy: 3 primaries, each with a synced replica
        before = {n.node_id: n.conn.cluster("NODES") for n in cluster.nodes}
        init(timeout=60)  # as on `docker compose up` again
        assert "the cluster exists" in runs[-1].stdout
        assert len(runs) == 2 and "cluster_state:ok" in runs[0].stdout
        after = {n.node_id: n.conn.cluster("NODES") for n in cluster.nodes}
        flags = {k: {a: (s["flags"], s["slots"]) for a, s in v.items()} for k, v in before.items()}
        assert flags == {k: {a: (s["flags"], s["slots"]) for a, s in v.items()} for k, v in after.items()}


def test_redis_server_takes_the_node_configuration(tmp_path: Path) -> None:
    port = free_port()
    args = [find_redis_server(), str(ROOT / "deploy" / "redis-cluster.conf"), "--port", str(port),
            "--cluster-port", str(free_port()), "--dir", str(tmp_path), "--cluster-announce-hostname", "redis-c1",
            "--logfile", "redis.log"]
    proc = subprocess.Popen(args, stdin=subprocess.DEVNULL)
    try:
        with redis.Redis(port=port, decode_responses=True) as node:
            wait_for(lambda: pings(node) or proc.poll() is not None, 15, what="redis-server to answer")
            assert proc.poll() is None, "redis-server refused deploy/redis-cluster.conf (its error is above)"
            assert node.info("cluster")["cluster_enabled"] == 1
            assert node.config_get("cluster-preferred-endpoint-type") == {"cluster-preferred-endpoint-type": "hostname"}
            assert node.config_get("appendonly") == {"appendonly": "yes"}
    finally:
        proc.kill()
        proc.wait(10)
