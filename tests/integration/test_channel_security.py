"""The SDK's channel factory against a real gRPC server over real sockets and real TLS.

A small recording server (generic handlers for the calls the clients make, speaking the real
messages) notes each call's `authorization` metadata and the client certificate's subject, so the
tests see what reached the wire: the token on a unary call, on the Pipeline stream and on
WatchTask; TLS from a trustme CA made at test time; mutual TLS; and failures that come fast.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
import trustme

from conveyor import AsyncClient, Client, TaskState, TLSConfig
from conveyor.channels import SECURITY_ENV
from conveyor.errors import Unavailable
from conveyor.v1 import task_pb2, task_service_pb2, worker_service_pb2
from tests.harness import ROOT, Cluster, spawn, wait_for

TOKEN = "s3cret-token-for-tests"
TASK = "t.echo"


@dataclass
class Seen:
    """What the server saw of one call."""

    method: str
    authorization: str | None
    client_subject: str | None


@dataclass
class RecordingServer:
    server: grpc.Server
    target: str
    seen: list[Seen] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def methods(self, authorization: str | None = f"Bearer {TOKEN}") -> set[str]:
        with self.lock:
            return {s.method for s in self.seen if s.authorization == authorization}


def _note(server: RecordingServer, method: str, context: grpc.ServicerContext) -> None:
    metadata = dict(context.invocation_metadata())
    subject = context.auth_context().get("x509_common_name")
    with server.lock:
        server.seen.append(Seen(method, metadata.get("authorization"),  # type: ignore[arg-type]
                                subject[0].decode() if subject else None))


def _handlers(rec: RecordingServer) -> list[grpc.GenericRpcHandler]:
    def get_task(req: task_service_pb2.GetTaskRequest, ctx: grpc.ServicerContext) -> task_service_pb2.GetTaskResponse:
        _note(rec, "GetTask", ctx)
        return task_service_pb2.GetTaskResponse(task=task_pb2.Task(id=req.task_id, state=task_pb2.TASK_STATE_QUEUED))

    def watch_task(req: task_service_pb2.WatchTaskRequest, ctx: grpc.ServicerContext
                   ) -> Iterator[task_service_pb2.WatchTaskResponse]:
        _note(rec, "WatchTask", ctx)
        yield task_service_pb2.WatchTaskResponse(task_id=req.task_id, state=task_pb2.TASK_STATE_SUCCEEDED, attempt=1)

    def pipeline(requests: Iterator[task_service_pb2.PipelineRequest], ctx: grpc.ServicerContext
                 ) -> Iterator[task_service_pb2.PipelineResponse]:
        _note(rec, "Pipeline", ctx)
        for req in requests:
            tasks = [task_service_pb2.SubmittedTask(id=f"id-{req.call_id}-{i}", queue="default",
                                                    state=task_pb2.TASK_STATE_QUEUED)
                     for i in range(len(req.submit.tasks))]
            yield task_service_pb2.PipelineResponse(call_id=req.call_id,
                                                    submit=task_service_pb2.SubmitResponse(tasks=tasks))

    def connect(requests: Iterator[worker_service_pb2.ConnectRequest], ctx: grpc.ServicerContext
                ) -> Iterator[worker_service_pb2.ConnectResponse]:
        _note(rec, "Connect", ctx)
        for _ in requests:  # hold the stream until the worker goes
            pass
        yield from ()

    tasks = grpc.method_handlers_generic_handler("conveyor.v1.TaskService", {
        "GetTask": grpc.unary_unary_rpc_method_handler(
            get_task, task_service_pb2.GetTaskRequest.FromString, task_service_pb2.GetTaskResponse.SerializeToString),
        "WatchTask": grpc.unary_stream_rpc_method_handler(
            watch_task, task_service_pb2.WatchTaskRequest.FromString,
            task_service_pb2.WatchTaskResponse.SerializeToString),
        "Pipeline": grpc.stream_stream_rpc_method_handler(
            pipeline, task_service_pb2.PipelineRequest.FromString,
            task_service_pb2.PipelineResponse.SerializeToString),
    })
    workers = grpc.method_handlers_generic_handler("conveyor.v1.WorkerService", {
        "Connect": grpc.stream_stream_rpc_method_handler(
            connect, worker_service_pb2.ConnectRequest.FromString,
            worker_service_pb2.ConnectResponse.SerializeToString),
    })
    return [tasks, workers]


def _serve(credentials: grpc.ServerCredentials | None) -> RecordingServer:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
    port = (server.add_insecure_port("127.0.0.1:0") if credentials is None
            else server.add_secure_port("127.0.0.1:0", credentials))
    rec = RecordingServer(server, f"127.0.0.1:{port}")
    server.add_generic_rpc_handlers(_handlers(rec))
    server.start()
    return rec


@dataclass
class Pki:
    """A CA made for this test, the server's certificate files, and a client certificate's."""

    ca: trustme.CA
    ca_file: Path
    client_cert: Path
    client_key: Path
    server_pair: tuple[bytes, bytes]


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    ca = trustme.CA()
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    server = ca.issue_cert("127.0.0.1", "localhost")
    client = ca.issue_cert("worker-7@conveyor.test", common_name="worker-7")
    client_cert, client_key = tmp_path / "client.pem", tmp_path / "client.key"
    for blob in client.cert_chain_pems:
        with client_cert.open("ab") as out:
            out.write(blob.bytes())
    client.private_key_pem.write_to_path(str(client_key))
    return Pki(ca, ca_file, client_cert, client_key, _pair(server))


def _pair(cert: trustme.LeafCert) -> tuple[bytes, bytes]:
    """(private key, certificate chain) as grpc.ssl_server_credentials takes them."""
    return cert.private_key_pem.bytes(), b"".join(b.bytes() for b in cert.cert_chain_pems)


@pytest.fixture
def tls_server(pki: Pki) -> Iterator[RecordingServer]:
    rec = _serve(grpc.ssl_server_credentials([pki.server_pair]))
    yield rec
    rec.server.stop(None)


@pytest.fixture
def mtls_server(pki: Pki) -> Iterator[RecordingServer]:
    rec = _serve(grpc.ssl_server_credentials([pki.server_pair], root_certificates=pki.ca.cert_pem.bytes(),
                                             require_client_auth=True))
    yield rec
    rec.server.stop(None)


@pytest.fixture
def plain_server() -> Iterator[RecordingServer]:
    rec = _serve(None)
    yield rec
    rec.server.stop(None)


def _every_kind(client: Client) -> None:
    """A unary call (GetTask), the Pipeline bidi stream (submit) and a server stream (WatchTask)."""
    assert client.get_task("abc").id == "abc"
    assert client.submit(TASK, ["hi"]).id.startswith("id-")
    assert [e.state for e in client.watch("abc", timeout=10)] == [TaskState.SUCCEEDED]


def test_client_sends_the_token_over_tls_on_every_kind_of_call(tls_server: RecordingServer, pki: Pki) -> None:
    with Client(tls_server.target, tls=TLSConfig(ca=pki.ca_file), token=TOKEN, timeout=10) as client:
        _every_kind(client)
    assert tls_server.methods() == {"GetTask", "Pipeline", "WatchTask"}
    assert tls_server.methods(None) == set(), "a call went out without the token"


def test_async_client_sends_the_token_over_tls_on_every_kind_of_call(tls_server: RecordingServer, pki: Pki) -> None:
    async def calls() -> None:
        async with AsyncClient(tls_server.target, tls=TLSConfig(ca=pki.ca_file), token=TOKEN, timeout=10) as client:
            assert (await client.get_task("abc")).id == "abc"
            assert (await client.submit(TASK, ["hi"])).id.startswith("id-")  # the Pipeline stream, written to
            assert [e.state async for e in client.watch("abc", timeout=10)] == [TaskState.SUCCEEDED]

    asyncio.run(calls())
    assert tls_server.methods() == {"GetTask", "Pipeline", "WatchTask"}


def test_token_and_tls_from_the_environment(tls_server: RecordingServer, pki: Pki,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONVEYOR_TLS_CA", str(pki.ca_file))
    monkeypatch.setenv("CONVEYOR_TOKEN", TOKEN)
    with Client(tls_server.target, timeout=10) as client:
        _every_kind(client)
    assert tls_server.methods() == {"GetTask", "Pipeline", "WatchTask"}


def test_token_over_plaintext_loopback(plain_server: RecordingServer) -> None:
    with Client(plain_server.target, token=TOKEN, timeout=10) as client:
        _every_kind(client)
    assert plain_server.methods() == {"GetTask", "Pipeline", "WatchTask"}


def test_no_token_no_header(plain_server: RecordingServer) -> None:
    with Client(plain_server.target, timeout=10) as client:
        _every_kind(client)
    assert plain_server.methods(None) == {"GetTask", "Pipeline", "WatchTask"}


def _fails_fast(client: Client, budget: float = 15.0) -> Unavailable:
    start = time.monotonic()
    with pytest.raises(Unavailable) as failed:
        client.get_task("abc")
    assert time.monotonic() - start < budget, "the failure took too long"
    return failed.value


def test_a_client_that_does_not_trust_the_ca_fails_fast(tls_server: RecordingServer) -> None:
    with Client(tls_server.target, tls=TLSConfig(), token=TOKEN, timeout=2) as client:  # the system roots only
        assert "CERTIFICATE_VERIFY_FAILED" in str(_fails_fast(client))
    assert tls_server.seen == []


def test_a_plaintext_client_against_a_tls_port_fails_fast(tls_server: RecordingServer) -> None:
    with Client(tls_server.target, timeout=2) as client:
        _fails_fast(client)
    assert tls_server.seen == []


def test_a_tls_client_against_a_plaintext_port_fails_fast(plain_server: RecordingServer, pki: Pki) -> None:
    with Client(plain_server.target, tls=TLSConfig(ca=pki.ca_file), timeout=2) as client:
        _fails_fast(client)
    assert plain_server.seen == []


def test_mutual_tls(mtls_server: RecordingServer, pki: Pki) -> None:
    mutual = TLSConfig(ca=pki.ca_file, cert=pki.client_cert, key=pki.client_key)
    with Client(mtls_server.target, tls=mutual, token=TOKEN, timeout=10) as client:
        _every_kind(client)
    assert mtls_server.methods() == {"GetTask", "Pipeline", "WatchTask"}
    assert {s.client_subject for s in mtls_server.seen} == {"worker-7"}


def test_mutual_tls_without_a_client_certificate_fails_fast(mtls_server: RecordingServer, pki: Pki) -> None:
    with Client(mtls_server.target, tls=TLSConfig(ca=pki.ca_file), token=TOKEN, timeout=2) as client:
        _fails_fast(client)
    assert mtls_server.seen == []


def test_server_name_override(pki: Pki) -> None:
    """A certificate that names only a DNS name, reached by IP address: server_name says which."""
    rec = _serve(grpc.ssl_server_credentials([_pair(pki.ca.issue_cert("scheduler.conveyor.test"))]))
    try:
        with Client(rec.target, tls=TLSConfig(ca=pki.ca_file), timeout=2) as client:
            _fails_fast(client)  # 127.0.0.1 is not the name in the certificate
        named = TLSConfig(ca=pki.ca_file, server_name="scheduler.conveyor.test")
        with Client(rec.target, tls=named, token=TOKEN, timeout=10) as client:
            _every_kind(client)
        assert rec.methods() == {"GetTask", "Pipeline", "WatchTask"}
    finally:
        rec.server.stop(None)


def _worker(cluster: Cluster, target: str, *args: str) -> Any:
    return cluster.worker(target, "tests.apps.basic:app", "--grace-period", "1", *args)


def test_worker_flags_reach_its_stream(cluster: Cluster, mtls_server: RecordingServer, pki: Pki) -> None:
    worker = _worker(cluster, mtls_server.target, "--token", TOKEN, "--tls-ca", str(pki.ca_file),
                     "--tls-cert", str(pki.client_cert), "--tls-key", str(pki.client_key))
    wait_for(lambda: "Connect" in mtls_server.methods() or not worker.alive(), what="the worker's stream")
    assert worker.alive(), worker.output()
    assert {s.client_subject for s in mtls_server.seen} == {"worker-7"}


def test_worker_token_from_the_environment(cluster: Cluster, plain_server: RecordingServer) -> None:
    cmd = [sys.executable, "-m", "conveyor_worker", "tests.apps.basic:app", "--scheduler", plain_server.target]
    worker = spawn("worker", cmd, cluster.log_dir, env={"CONVEYOR_TOKEN": TOKEN})
    cluster.procs.append(worker)
    wait_for(lambda: plain_server.seen or not worker.alive(), what="the worker's stream")
    assert plain_server.methods() == {"Connect"}, worker.output()


def _run_worker(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in SECURITY_ENV and k != "CONVEYOR_SCHEDULER"}
    return subprocess.run([sys.executable, "-m", "conveyor_worker", "tests.apps.basic:app", *args], check=False,
                          cwd=ROOT, capture_output=True, text=True, timeout=60, env={**env, "PYTHONPATH": str(ROOT)})


@pytest.mark.parametrize("target", ["10.255.255.1:50051", "scheduler.example:50051",
                                    "127.0.0.1:50051,10.255.255.1:50051"])
def test_worker_refuses_a_plaintext_token_to_a_remote_scheduler(target: str) -> None:
    done = _run_worker("--scheduler", target, "--token", TOKEN)
    assert done.returncode != 0
    assert "refusing to send a token in plaintext" in done.stderr and "TLS" in done.stderr
    assert TOKEN not in done.stderr + done.stdout


def test_worker_refuses_a_client_cert_without_its_key(pki: Pki) -> None:
    done = _run_worker("--tls-cert", str(pki.client_cert))
    assert done.returncode == 2, done.stderr
    assert "without its key" in done.stderr


def test_a_real_worker_and_client_work_through_token_channels(cluster: Cluster, redis_url: str) -> None:
    """The intercepted calls behave as plain ones end to end: the worker's Connect stream (credit,
    acks), the client's Pipeline and its waits, against a real scheduler on loopback."""
    _, target = cluster.scheduler(redis_url)
    cluster.worker(target, "tests.apps.basic:app", "--token", TOKEN)
    with Client(target, token=TOKEN, timeout=10) as client:
        handles = [client.send("t.add", [i, 1]) for i in range(20)]
        assert [h.result(timeout=30) for h in handles] == [i + 1 for i in range(20)]

    async def aio() -> int:
        async with AsyncClient(target, token=TOKEN, timeout=10) as client:
            return int(await (await client.submit("t.add", [2, 3])).result(timeout=30))

    assert asyncio.run(aio()) == 5
