"""[[cert]] entries: with mutual TLS, a client certificate's subject stands for roles and queues.

The scheduler runs in this process (its own server and Redis, as a replica would) with a
mutual-TLS port added to its gRPC server, so the certificate reaches the auth interceptor
as it does in production; certificates come from trustme, made for this test.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import grpc
import pytest
import trustme
from cryptography import x509

from conveyor.v1 import admin_service_pb2 as admin
from conveyor.v1 import admin_service_pb2_grpc as admin_grpc
from conveyor.v1 import task_pb2
from conveyor.v1 import task_service_pb2 as ts
from conveyor.v1 import task_service_pb2_grpc as ts_grpc
from conveyor.v1 import worker_service_pb2 as ws
from conveyor.v1 import worker_service_pb2_grpc as ws_grpc
from conveyor_scheduler.config import SchedulerConfig
from conveyor_scheduler.server import SchedulerServer
from tests.auth_calls import auth_file, bearer

ADMIN = "root-s3cret"


def subject_of(cert: trustme.LeafCert) -> str:
    return x509.load_pem_x509_certificate(cert.cert_chain_pems[0].bytes()).subject.rfc4514_string()


async def status_of(call: Any) -> grpc.StatusCode:
    try:
        await call
    except grpc.aio.AioRpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


def test_a_listed_client_certificate_stands_for_its_roles_and_queues(redis_url: str, tmp_path: Path) -> None:
    ca = trustme.CA()
    server_cert = ca.issue_cert("127.0.0.1")
    worker = ca.issue_cert("worker-1.example", common_name="worker-1", organization_name="Acme")
    dash = ca.issue_cert("dash.example", common_name="dash", organization_name="Acme")
    stranger = ca.issue_cert("stranger.example", common_name="stranger")
    path = auth_file(tmp_path / "tokens.toml", {ADMIN: ("root", ["admin"], None)})
    dash_entry = f'\n[[cert]]\nsubject = "{subject_of(dash)}"\nroles = ["reader"]\n'
    path.write_text(path.read_text()
                    + '\n[[cert]]\nsubject = "CN=worker-1"\nroles = ["worker"]\nqueues = ["payments"]\n'
                    + dash_entry)

    async def run() -> None:
        scheduler = SchedulerServer(SchedulerConfig(redis_url=redis_url, port=0, metrics_port=0, auth_file=path))
        creds = grpc.ssl_server_credentials(
            [(server_cert.private_key_pem.bytes(), server_cert.cert_chain_pems[0].bytes())],
            root_certificates=ca.cert_pem.bytes(), require_client_auth=True)
        port = scheduler.server.add_secure_port("127.0.0.1:0", creds)
        await scheduler.start()
        try:
            await exercise(f"127.0.0.1:{port}")
        finally:
            await scheduler.stop(0)

    def channel(client: trustme.LeafCert) -> grpc.aio.Channel:
        return grpc.aio.secure_channel(target, grpc.ssl_channel_credentials(
            ca.cert_pem.bytes(), client.private_key_pem.bytes(), client.cert_chain_pems[0].bytes()))

    async def exercise(at: str) -> None:
        nonlocal target
        target = at
        async with channel(worker) as ch:
            tasks = ts_grpc.TaskServiceStub(ch)
            assert await status_of(tasks.Poll(ts.PollRequest(queues=["payments"]), timeout=10)) == grpc.StatusCode.OK
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await tasks.Poll(ts.PollRequest(queues=["emails"]), timeout=10)
            assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
            assert "cert 'CN=worker-1' (worker)" in (err.value.details() or "")
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await admin_grpc.AdminServiceStub(ch).PurgeQueue(admin.PurgeQueueRequest(queue="payments"), timeout=10)
            assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
            hello = ws.ConnectRequest(hello=ws.WorkerHello(worker_id="worker-1", queues=["payments"], credit=1))
            stream = ws_grpc.WorkerServiceStub(ch).Connect(timeout=10)
            await stream.write(hello)
            assert (await stream.read()).WhichOneof("kind") == "accepted"
            stream.cancel()
        async with channel(dash) as ch:  # listed by its whole subject
            queues = await admin_grpc.AdminServiceStub(ch).ListQueues(admin.ListQueuesRequest(), timeout=10)
            assert isinstance(queues, admin.ListQueuesResponse)
            assert await status_of(ts_grpc.TaskServiceStub(ch).Submit(ts.SubmitRequest(), timeout=10)) == (
                grpc.StatusCode.PERMISSION_DENIED)
            # A watch open under the certificate ends once the file no longer lists it.
            task = (await ts_grpc.TaskServiceStub(ch).Submit(ts.SubmitRequest(tasks=[task_pb2.TaskSpec(
                name="a.task", queue="nobody")]), metadata=bearer(ADMIN), timeout=10)).tasks[0]
            watch = ts_grpc.TaskServiceStub(ch).WatchTask(ts.WatchTaskRequest(task_id=task.id), timeout=20)
            assert (await watch.read()).task_id == task.id
            path.write_text(path.read_text().replace(dash_entry, ""))
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await watch.read()
            assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
            assert f"cert {subject_of(dash)!r} was removed" in (err.value.details() or "")
        async with channel(stranger) as ch:
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await admin_grpc.AdminServiceStub(ch).ListQueues(admin.ListQueuesRequest(), timeout=10)
            assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
            assert "or a client certificate the scheduler's auth file lists" in (err.value.details() or "")
            # A token sent with the call wins over the certificate.
            await admin_grpc.AdminServiceStub(ch).ListQueues(admin.ListQueuesRequest(), metadata=bearer(ADMIN),
                                                             timeout=10)

    target = ""
    asyncio.run(run())
