"""What `make certs` writes runs a secure stack as compose.yaml and README's "Running in
production" use it: Redis over TLS with the generated ACL file, a scheduler with the generated
certificate, token file and rediss:// URL, a worker and the CLI with their role's token.

(Compose itself needs Docker; this runs the same files with the same flags as local processes.)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import redis

from tests.harness import ROOT, ClientTLS, Cluster, RedisServer, connected, free_port, pings, wait_for


def _env_file(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("deploy") / "certs"
    subprocess.run([sys.executable, str(ROOT / "scripts" / "make_certs.py"), "--out", str(out)], check=True)
    return out


def _cli(target: str, certs: Path, role: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **_env_file(certs / f"{role}.env"), "CONVEYOR_TLS_CA": str(certs / "ca.pem")}
    return subprocess.run([sys.executable, "-m", "conveyor.cli", "--scheduler", target, *args],
                          check=False, capture_output=True, text=True, timeout=60, env=env)


def test_make_certs_files_run_a_secure_stack(certs: Path, cluster: Cluster, tmp_path: Path) -> None:
    port = free_port()
    server = RedisServer(tmp_path / "redis", port=port).start(  # as compose.yaml's redis service
        "--port", "0", "--tls-port", str(port), "--tls-cert-file", str(certs / "redis.pem"),
        "--tls-key-file", str(certs / "redis-key.pem"), "--tls-ca-cert-file", str(certs / "ca.pem"),
        "--tls-auth-clients", "yes", "--aclfile", str(certs / "redis-users.acl"), answering=False)
    try:
        # the health check's user (default) may PING and nothing else
        probe = redis.Redis(port=port, ssl=True, ssl_ca_certs=str(certs / "ca.pem"),
                            ssl_certfile=str(certs / "client.pem"), ssl_keyfile=str(certs / "client-key.pem"))
        wait_for(lambda: pings(probe), 15, what="the TLS redis-server")
        with pytest.raises(redis.exceptions.NoPermissionError):
            probe.get("cv:anything")
        url = (_env_file(certs / "scheduler.env")["CONVEYOR_REDIS_URL"]
               .replace("@redis:6379/", f"@127.0.0.1:{port}/").replace("=/certs/", f"={certs}/"))
        proc, target = cluster.scheduler(
            url, "--tls-cert", str(certs / "scheduler.pem"), "--tls-key", str(certs / "scheduler-key.pem"),
            "--auth-file", str(certs / "tokens.toml"), tls=ClientTLS(certs / "ca.pem"))
        worker_token = _env_file(certs / "worker.env")["CONVEYOR_TOKEN"]
        connected(proc, cluster.worker(target, "tests.apps.basic:app", "--tls-ca", str(certs / "ca.pem"),
                                       "--token", worker_token))
        done = _cli(target, certs, "producer", "submit", "t.add", "--args", "[2, 3]", "--wait")
        assert done.returncode == 0 and "5" in done.stdout, done.stderr
        listed = _cli(target, certs, "reader", "queues", "--json")
        assert listed.returncode == 0, listed.stderr
        assert "default" in {q["queue"] for q in json.loads(listed.stdout)["queues"]}
        refused = _cli(target, certs, "reader", "queue", "purge", "default", "--yes")
        assert refused.returncode != 0 and "PurgeQueue" in refused.stderr + refused.stdout
        assert _cli(target, certs, "admin", "queue", "purge", "default", "--yes").returncode == 0
    finally:
        server.stop()

