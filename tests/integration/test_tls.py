"""The scheduler over TLS and mutual TLS: real processes, certificates made at test time."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest
from google.protobuf.duration_pb2 import Duration
from grpc_health.v1 import health_pb2, health_pb2_grpc

from conveyor import Client
from conveyor.v1 import task_pb2, task_service_pb2, task_service_pb2_grpc
from tests.harness import ROOT, ClientTLS, Cluster, free_port, spawn, wait_for
from tests.integration.test_metrics import scrape, value
from tests.tls_files import Authority, Pair, common_name, peer_certificate, serial_of

NOW = dt.datetime.now(dt.UTC)


def tls_args(pair: Pair, client_ca: Path | None = None) -> list[str]:
    args = ["--tls-cert", str(pair.cert), "--tls-key", str(pair.key)]
    return [*args, "--tls-client-ca", str(client_ca)] if client_ca else args


def health_check(channel: grpc.Channel, timeout: float = 5) -> int:
    return health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=timeout).status


def refused(channel: grpc.Channel, timeout: float = 5) -> tuple[grpc.StatusCode, str, float]:
    """The status of a health check that must fail, its details, and how long failing took."""
    start = time.monotonic()
    with pytest.raises(grpc.RpcError) as info, channel:
        health_check(channel, timeout)
    err = info.value
    return err.code(), err.details() or "", time.monotonic() - start  # type: ignore[attr-defined]


def check_command(port: int, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
    full.update({"PYTHONPATH": str(ROOT), **(env or {})})
    return subprocess.run([sys.executable, "-m", "conveyor_scheduler", "--port", str(port), "--check", *args],
                          check=False, capture_output=True, text=True, env=full, timeout=30)


def test_tls_end_to_end_and_health_check(cluster: Cluster, redis_url: str, tmp_path: Path) -> None:
    """A TLS client submits, polls, acks and reads the result; --check works over TLS."""
    ca = Authority(tmp_path / "pki")
    pair = ca.issue("server")
    proc, target = cluster.scheduler(redis_url, *tls_args(pair), tls=ca.client())
    assert "over TLS" in proc.output() and "TLS certificate loaded: subject" in proc.output()
    with Client(target, channel=ca.client().channel(target)) as client:
        handle = client.submit("tls.echo", {"n": 1}, queue="tls")
        stub = task_service_pb2_grpc.TaskServiceStub(client._channel)
        polled = stub.Poll(task_service_pb2.PollRequest(queues=["tls"], max_tasks=1, wait=Duration(seconds=5),
                                                        worker_id="tls-poller"), timeout=10)
        [lease] = polled.tasks
        assert lease.task.id == handle.id
        stub.Ack(task_service_pb2.AckRequest(acks=[task_pb2.TaskAck(
            task_id=lease.task.id, lease_token=lease.lease_token,
            result=task_pb2.TaskResult(data=b'"done"', content_type="application/json"))]), timeout=10)
        assert handle.result(timeout=10) == "done"

    port = int(target.rsplit(":", 1)[1])
    ok = check_command(port, "--tls-cert", str(pair.cert), env={"CONVEYOR_TLS_CA": str(ca.pem)})
    assert ok.returncode == 0, ok.stderr
    untrusted = check_command(port, "--tls-cert", str(pair.cert))  # the system roots do not know the test CA
    assert untrusted.returncode == 1 and "UNAVAILABLE" in untrusted.stderr
    plaintext = check_command(port)
    assert plaintext.returncode == 1


def test_health_check_verifies_a_certificate_made_out_to_a_service_name(cluster: Cluster, redis_url: str,
                                                                         tmp_path: Path) -> None:
    """A container checks itself on 127.0.0.1 with a certificate for its service name only."""
    ca = Authority(tmp_path / "pki")
    pair = ca.issue("server", "scheduler.internal")
    client_pair = ca.issue("client", "probe")
    port = free_port()
    # Started by hand: the harness's readiness check connects to 127.0.0.1, which this certificate does not name.
    sched = spawn("scheduler", [sys.executable, "-m", "conveyor_scheduler", "--port", str(port), "--metrics-port",
                                "0", "--redis-url", redis_url, *tls_args(pair, ca.pem)], tmp_path)
    cluster.procs.append(sched)
    env = {"CONVEYOR_TLS_CA": str(ca.pem), "CONVEYOR_TLS_CERT": str(client_pair.cert),
           "CONVEYOR_TLS_KEY": str(client_pair.key)}
    wait_for(lambda: check_command(port, "--tls-cert", str(pair.cert), env=env).returncode == 0 or not sched.alive(),
             what="the scheduler to pass --check over mutual TLS")
    assert sched.alive(), sched.output()
    no_client_cert = check_command(port, "--tls-cert", str(pair.cert), env={"CONVEYOR_TLS_CA": str(ca.pem)})
    assert no_client_cert.returncode == 1


def test_mutual_tls_refuses_missing_foreign_and_expired_client_certificates(cluster: Cluster, redis_url: str,
                                                                            tmp_path: Path) -> None:
    ca = Authority(tmp_path / "pki")
    other = Authority(tmp_path / "other", "other-ca")
    good = ca.issue("client", "client.example", common_name="good client")
    foreign = other.issue("foreign", "client.example")
    expired = ca.issue("expired", "client.example", not_before=NOW - dt.timedelta(days=30),
                       not_after=NOW - dt.timedelta(days=1))
    proc, target = cluster.scheduler(redis_url, *tls_args(ca.issue("server"), ca.pem), tls=ca.client(good))
    assert health_check(ca.client(good).channel(target)) == health_pb2.HealthCheckResponse.SERVING
    # With TLS 1.3 the client finishes its side of the handshake before the server has checked
    # its certificate, so the client only learns that the connection was closed; the reason is in
    # the scheduler's log (gRPC's handshake error).
    cases = {"PEER_DID_NOT_RETURN_A_CERTIFICATE": ca.client(),
             "CERTIFICATE_VERIFY_FAILED: unable to get local issuer certificate":
                 ClientTLS(ca.pem, foreign.cert, foreign.key),
             "CERTIFICATE_VERIFY_FAILED: certificate has expired": ca.client(expired)}
    for reason, tls in cases.items():
        code, details, took = refused(tls.channel(target))
        assert code == grpc.StatusCode.UNAVAILABLE, (reason, code, details)
        assert took < 4, (reason, took)
        wait_for(lambda reason=reason: reason in proc.output(), 5, what=f"the scheduler to log {reason}")


def test_plaintext_and_tls_mismatches_fail_fast(cluster: Cluster, redis_url: str, tmp_path: Path) -> None:
    ca = Authority(tmp_path / "pki")
    _, tls_target = cluster.scheduler(redis_url, *tls_args(ca.issue("server")), tls=ca.client(), name="tls")
    _, plain_target = cluster.scheduler(redis_url, name="plain")
    for channel in (grpc.insecure_channel(tls_target), ca.client().channel(plain_target)):
        code, details, took = refused(channel, timeout=10)
        assert code == grpc.StatusCode.UNAVAILABLE, (code, details)
        assert took < 5, took  # a handshake that cannot succeed fails, it does not wait out the deadline


def test_rotation_serves_new_certificate_to_new_connections(cluster: Cluster, redis_url: str,
                                                            tmp_path: Path) -> None:
    """Replaced files are served to new connections; open ones keep working; a key that does not
    match its certificate (a rotation caught half-way) is refused and the old pair kept."""
    ca = Authority(tmp_path / "pki")
    first = ca.issue("server", common_name="first")
    proc, target = cluster.scheduler(redis_url, *tls_args(first), tls=ca.client())
    port = int(target.rsplit(":", 1)[1])
    before = peer_certificate(port, ca.pem)
    assert common_name(before) == "first"
    old = ca.client().channel(target)
    assert health_check(old) == health_pb2.HealthCheckResponse.SERVING

    half = ca.issue("staged", common_name="second")
    first.cert.write_bytes(half.cert.read_bytes())  # the new certificate, the old key still in place
    wait_for(lambda: "does not match the certificate" in proc.output(), 10, what="the mismatch to be logged")
    assert serial_of(peer_certificate(port, ca.pem)) == serial_of(before)
    assert health_check(ca.client().channel(target)) == health_pb2.HealthCheckResponse.SERVING

    first.key.write_bytes(half.key.read_bytes())  # the rotation completes
    after = wait_for(lambda: (c := peer_certificate(port, ca.pem)) and common_name(c) == "second" and c, 10,
                     what="the new certificate to be served")
    assert serial_of(after) != serial_of(before)
    assert health_check(old) == health_pb2.HealthCheckResponse.SERVING  # the open connection carries on
    assert proc.output().count("TLS files changed: reloaded") == 1

    proc.popen.send_signal(signal.SIGHUP)  # re-read at once, changed or not
    wait_for(lambda: proc.output().count("TLS files changed: reloaded") == 2, 10, what="SIGHUP to reload")
    assert proc.alive()


def test_expiry_soon_is_warned_and_exported(cluster: Cluster, redis_url: str, tmp_path: Path) -> None:
    ca = Authority(tmp_path / "pki")
    not_after = (NOW + dt.timedelta(days=5)).replace(microsecond=0)
    metrics = free_port()
    proc, _ = cluster.scheduler(redis_url, *tls_args(ca.issue("server", not_after=not_after), ca.pem),
                                "--metrics-port", str(metrics), "--scheduler-id", "tls-1",
                                tls=ca.client(ca.issue("client", "c")))
    assert "WARNING conveyor_scheduler.tls: the TLS certificate expires in 5.0 days" in proc.output()
    wait_for(lambda: f":{metrics}/metrics" in proc.output(), what="the metrics line")
    samples = scrape(metrics)
    name = "conveyor_tls_certificate_expiry_timestamp_seconds"
    assert value(samples, name, replica="tls-1", certificate="server") == not_after.timestamp()
    assert value(samples, name, replica="tls-1", certificate="client-ca") is not None
    expiring = "conveyor_tls_certificate_expiring"  # the same warning as a gauge: no arithmetic in the alert
    assert value(samples, expiring, replica="tls-1", certificate="server") == 1.0
    assert value(samples, expiring, replica="tls-1", certificate="client-ca") == 0.0


def test_a_certificate_that_comes_within_14_days_while_served_is_warned_and_flagged(
        cluster: Cluster, redis_url: str, tmp_path: Path) -> None:
    """The file watcher notices the line being crossed: no reload, no restart, one warning."""
    ca = Authority(tmp_path / "pki")
    crossing = (dt.datetime.now(dt.UTC) + dt.timedelta(seconds=8)).replace(microsecond=0)
    pair = ca.issue("server", not_after=crossing + dt.timedelta(days=14))
    metrics = free_port()
    proc, _ = cluster.scheduler(redis_url, *tls_args(pair), "--metrics-port", str(metrics), "--scheduler-id", "x-1",
                                tls=ca.client())
    wait_for(lambda: f":{metrics}/metrics" in proc.output(), what="the metrics line")

    def flagged() -> float | None:
        return value(scrape(metrics), "conveyor_tls_certificate_expiring", replica="x-1", certificate="server")

    if dt.datetime.now(dt.UTC) < crossing - dt.timedelta(seconds=1):  # (a slow start-up may begin past it)
        assert flagged() == 0.0 and "expires in" not in proc.output()
    wait_for(lambda: flagged() == 1.0, 20, what="the gauge to flag the certificate")
    wait_for(lambda: "WARNING conveyor_scheduler.tls: the TLS certificate expires in 14.0 days" in proc.output()
             or "expires in 13.9 days" in proc.output(), 5, what="the warning while running")
    assert proc.output().count("the TLS certificate expires in") == 1 and proc.alive()


def test_binding_without_tls_and_tokens_is_refused(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "conveyor_scheduler", "--host", "0.0.0.0", "--port", "0",
                          "--metrics-port", "0"], check=False, capture_output=True, text=True, timeout=30,
                         env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=tmp_path)
    assert out.returncode == 2
    assert "--tls-cert" in out.stderr and "--auth-file" in out.stderr and "--insecure" in out.stderr
