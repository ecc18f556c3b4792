"""The core path with everything on: mutual TLS, tokens with roles and queue scopes, a real
scheduler and worker process, and both clients through the SDK's channel factory.

Submit, the worker's stream, ack, result, watch and cancel all pass over TLS with a token
checked on every call; each task ends in exactly one terminal state with the right result.
"""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path

import pytest

from conveyor import AsyncClient, Call, Client, SubmitOptions, TaskState, TLSConfig
from conveyor.errors import PermissionDenied, Unauthenticated, Unavailable
from tests.auth_calls import auth_file
from tests.harness import Cluster, connected
from tests.tls_files import Authority

QUEUES = "secure,secure-b"


@pytest.fixture
def stack(cluster: Cluster, redis_url: str, tmp_path: Path) -> tuple[str, TLSConfig, dict[str, str]]:
    ca = Authority(tmp_path / "tls")
    server = ca.issue("server")
    client = ca.issue("client", common_name="conveyor-client")
    tokens = {name: secrets.token_urlsafe(32) for name in ("producer", "worker", "admin")}
    auth = auth_file(tmp_path / "tokens.toml", {tokens["producer"]: ("web", ["producer"], ["secure*"]),
                                               tokens["worker"]: ("workers", ["worker"], ["secure*"]),
                                               tokens["admin"]: ("ops", ["admin"], None)})
    proc, target = cluster.scheduler(
        redis_url, "--tls-cert", str(server.cert), "--tls-key", str(server.key), "--tls-client-ca", str(ca.pem),
        "--auth-file", str(auth), tls=ca.client(client))
    worker = cluster.worker(target, "tests.apps.basic:app", "--tls-ca", str(ca.pem), "--tls-cert", str(client.cert),
                            "--tls-key", str(client.key), "--token", tokens["worker"], queues=QUEUES)
    connected(proc, worker)
    return target, TLSConfig(ca=ca.pem, cert=client.cert, key=client.key), tokens


def test_the_core_path_over_mutual_tls_with_tokens(stack: tuple[str, TLSConfig, dict[str, str]]) -> None:
    target, tls, tokens = stack
    with Client(target, tls=tls, token=tokens["producer"]) as client:
        one = client.submit("t.add", [2, 3], queue="secure")
        assert one.result(timeout=30) == 5
        many = client.submit_many([Call("t.add", [i, i], {}, SubmitOptions(queue="secure-b")) for i in range(50)])
        sent = [client.send("t.add", [i, 1], queue="secure") for i in range(20)]
        client.flush()
        assert [h.result(timeout=30) for h in many] == [2 * i for i in range(50)]
        assert [h.result(timeout=30) for h in sent] == [i + 1 for i in range(20)]
        watched = client.submit("t.sleep", [0.2, "done"], queue="secure")
        states = [event.state for event in watched.watch(timeout=30)]
        assert states[-1] is TaskState.SUCCEEDED and watched.result(timeout=5) == "done"
        later = client.submit("t.add", [1, 1], queue="secure", countdown=600)
        assert client.cancel(later.id) is TaskState.CANCELLED
        assert later.info().state == TaskState.CANCELLED
        # the producer's token is scoped to secure*: another queue is refused, naming the call
        with pytest.raises(PermissionDenied, match=r"queue .payments.* token .web. \(producer\)"):
            client.submit("t.add", [1, 1], queue="payments")
    with Client(target, tls=tls, token=tokens["admin"]) as admin:
        assert {q.name for q in admin.admin.queues()} >= {"secure", "secure-b"}


def test_the_async_client_over_mutual_tls_with_tokens(stack: tuple[str, TLSConfig, dict[str, str]]) -> None:
    target, tls, tokens = stack

    async def run() -> list[object]:
        async with AsyncClient(target, tls=tls, token=tokens["producer"]) as client:
            handles = await client.submit_many([Call("t.add", [i, 2], {}, SubmitOptions(queue="secure"))
                                                for i in range(20)])
            return [await h.result(timeout=30) for h in handles]

    assert asyncio.run(run()) == [i + 2 for i in range(20)]


def test_without_a_client_certificate_or_a_token_nothing_gets_through(
        stack: tuple[str, TLSConfig, dict[str, str]]) -> None:
    target, tls, tokens = stack
    no_cert = Client(target, tls=TLSConfig(ca=tls.ca), token=tokens["producer"], timeout=5)
    no_token = Client(target, tls=tls, token="", timeout=5)
    unknown = Client(target, tls=tls, token="not-a-token", timeout=5)
    with no_cert, no_token, unknown:
        with pytest.raises(Unavailable, match="requires client certificates"):  # mutual TLS: no certificate
            no_cert.submit("t.add", [1, 1], queue="secure")
        with pytest.raises(Unauthenticated, match="needs a token"):
            no_token.submit("t.add", [1, 1], queue="secure")
        with pytest.raises(Unauthenticated) as refused:
            unknown.get_task("01M96N7V92000P2HEWPPTP330J")
    assert "not-a-token" not in str(refused.value)


def test_a_task_submits_tasks_with_the_workers_command_line_tls_and_token(
        cluster: Cluster, redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`conveyor-worker --token --tls-*` (no CONVEYOR_* variable) reach `app.client` and
    `app.aclient` too, in the worker and in its process-pool children, so a task can spawn tasks."""
    for name in ("CONVEYOR_TOKEN", "CONVEYOR_TLS_CA", "CONVEYOR_TLS_CERT", "CONVEYOR_TLS_KEY"):
        monkeypatch.delenv(name, raising=False)
    ca = Authority(tmp_path / "tls")
    server, client = ca.issue("server"), ca.issue("client", common_name="conveyor-client")
    tokens = {name: secrets.token_urlsafe(32) for name in ("producer", "worker")}
    auth = auth_file(tmp_path / "tokens.toml", {tokens["producer"]: ("web", ["producer"], None),
                                               tokens["worker"]: ("workers", ["worker"], None)})
    proc, target = cluster.scheduler(
        redis_url, "--tls-cert", str(server.cert), "--tls-key", str(server.key), "--tls-client-ca", str(ca.pem),
        "--auth-file", str(auth), tls=ca.client(client))
    monkeypatch.setenv("SPAWNER_SCHEDULER", target)  # where the app submits; how is the worker's business
    worker = cluster.worker(target, "tests.apps.spawner:app", "--tls-ca", str(ca.pem), "--tls-cert",
                            str(client.cert), "--tls-key", str(client.key), "--token", tokens["worker"],
                            "--pool", "threads,processes")
    connected(proc, worker)
    tls = TLSConfig(ca=ca.pem, cert=client.cert, key=client.key)
    with Client(target, tls=tls, token=tokens["producer"]) as producer:
        handles = [producer.submit(name, [i]) for i, name in enumerate(
            ("spawn.parent", "spawn.aparent", "spawn.parent_in_child"), start=1)]
        assert [h.result(timeout=60) for h in handles] == [3, 5, 7]
