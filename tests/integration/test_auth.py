"""Tokens and roles against a real scheduler process: the whole role x method matrix from
access.py, unauthenticated calls, health and reflection, the auth file at start-up and on
change, the denial counter on /metrics, and `conveyor token new`."""

from __future__ import annotations

import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2

from conveyor import Client, signature
from conveyor.v1 import (
    admin_service_pb2,
    schedule_service_pb2,
    task_pb2,
    task_service_pb2,
    task_service_pb2_grpc,
    worker_service_pb2,
    workflow_service_pb2,
    workflow_service_pb2_grpc,
)
from conveyor_scheduler import access
from tests.auth_calls import Method, auth_file, call, granted
from tests.harness import Cluster, free_port, wait_for

SECRETS = {role: f"{role}-secret-0123456789" for role in access.ROLES}
TASKS = task_service_pb2.DESCRIPTOR.services_by_name["TaskService"]
SUBMIT = Method.of(TASKS.methods_by_name["Submit"])
PIPELINE = Method.of(TASKS.methods_by_name["Pipeline"])
LIST_QUEUES = Method.of(admin_service_pb2.DESCRIPTOR.services_by_name["AdminService"].methods_by_name["ListQueues"])
REFLECTION_REQUEST = reflection_pb2.ServerReflectionRequest(list_services="")


def every_method() -> list[Method]:
    """Every method of every service the scheduler serves behind auth, each with a request that
    is valid enough: what an allowed call may still fail with is INVALID_ARGUMENT or NOT_FOUND."""
    methods = [Method.of(m) for module in (task_service_pb2, worker_service_pb2, admin_service_pb2,
                                           schedule_service_pb2, workflow_service_pb2)
               for service in module.DESCRIPTOR.services_by_name.values() for m in service.methods]
    reflection = reflection_pb2.DESCRIPTOR.services_by_name["ServerReflection"].methods_by_name["ServerReflectionInfo"]
    v1alpha = Method.of(reflection, REFLECTION_REQUEST)
    v1 = Method(v1alpha.path.replace("v1alpha", "v1"), "bidi", REFLECTION_REQUEST, v1alpha.response)
    return [*methods, v1alpha, v1]


@pytest.fixture
def secured_target(cluster: Cluster, redis_url: str, tmp_path: Path) -> tuple[str, Path]:
    """A scheduler with one unscoped token per role: its address and the auth file."""
    path = auth_file(tmp_path / "tokens.toml", {s: (role, [role], None) for role, s in SECRETS.items()})
    return cluster.scheduler(redis_url, "--auth-file", str(path))[1], path


@pytest.fixture
def secured(secured_target: tuple[str, Path]) -> Iterator[tuple[grpc.Channel, Path]]:
    """A channel to that scheduler, and the auth file."""
    target, path = secured_target
    with grpc.insecure_channel(target) as channel:
        yield channel, path


def test_every_method_allows_exactly_the_roles_of_the_table(secured: tuple[grpc.Channel, Path]) -> None:
    channel, _ = secured
    methods = every_method()
    assert {m.path for m in methods} == set(access.ALLOWED)  # the matrix covers the whole table
    assert {m.kind for m in methods} == {"unary", "server", "bidi"}
    wrong = []
    for method in methods:
        for role in access.ROLES:
            status = call(channel, method, SECRETS[role])
            expected = role in access.roles_for(method.path)
            if granted(status) != expected:
                wrong.append(f"{method.path} as {role}: {status[0].name} {status[1]!r}")
            elif expected:
                assert status[0] in (grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT,
                                     grpc.StatusCode.NOT_FOUND), (method.path, role, status)
            else:
                assert status[0] == grpc.StatusCode.PERMISSION_DENIED, (method.path, role, status)
                assert method.path.lstrip("/") in status[1] and f"token '{role}' ({role})" in status[1]
                assert SECRETS[role] not in status[1]
    # A stream that carries other calls (Pipeline) checks each message as the call it carries.
    assert access.MESSAGE_ROLES
    for path, (oneof, kinds) in access.MESSAGE_ROLES.items():
        stream = next(m for m in methods if m.path == path)
        for kind, roles in kinds.items():
            message = type(stream.request)()
            getattr(message, kind).SetInParent()
            assert message.WhichOneof(oneof) == kind
            for role in access.ROLES:
                status = call(channel, stream, SECRETS[role], message)
                if granted(status) != (role in roles):
                    wrong.append(f"{path} {kind} message as {role}: {status[0].name} {status[1]!r}")
                elif role not in roles:
                    assert status[0] == grpc.StatusCode.PERMISSION_DENIED, (path, kind, role, status)
                    assert f"{path.lstrip('/')}: a {kind} message needs role" in status[1], status
                    assert f"token '{role}' ({role})" in status[1] and SECRETS[role] not in status[1]
    assert not wrong, "\n".join(wrong)


def test_no_token_or_an_unknown_one_is_unauthenticated_naming_the_method(
        secured: tuple[grpc.Channel, Path]) -> None:
    channel, _ = secured
    for method in every_method():
        for secret in (None, "not-a-known-token-4711"):
            code, details = call(channel, method, secret)
            assert code == grpc.StatusCode.UNAUTHENTICATED, (method.path, secret, code, details)
            assert method.path.lstrip("/") in details and "4711" not in details
    md = [("authorization", "Basic dXNlcjpwYXNz")]  # not a bearer token
    with pytest.raises(grpc.RpcError) as err:
        channel.unary_unary(SUBMIT.path)(b"", metadata=md, timeout=10)
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED  # type: ignore[attr-defined]
    assert "dXNlcjpwYXNz" not in (err.value.details() or "")  # type: ignore[attr-defined]


def test_health_needs_no_token_and_reflection_needs_reader(secured: tuple[grpc.Channel, Path]) -> None:
    channel, _ = secured
    health = health_pb2_grpc.HealthStub(channel)
    assert health.Check(health_pb2.HealthCheckRequest(), timeout=5).status == health_pb2.HealthCheckResponse.SERVING
    assert health.Check(health_pb2.HealthCheckRequest(service="conveyor.v1.TaskService"), timeout=5).status == (
        health_pb2.HealthCheckResponse.SERVING)
    reflection = next(m for m in every_method() if m.path.startswith("/grpc.reflection.v1alpha"))
    assert call(channel, reflection, None)[0] == grpc.StatusCode.UNAUTHENTICATED
    assert call(channel, reflection, SECRETS["producer"])[0] == grpc.StatusCode.PERMISSION_DENIED
    stream = channel.stream_stream(reflection.path, request_serializer=type(REFLECTION_REQUEST).SerializeToString,
                                   response_deserializer=reflection.response.FromString)
    (answer,) = list(stream(iter([REFLECTION_REQUEST]), metadata=[("authorization", f"Bearer {SECRETS['reader']}")],
                            timeout=10))
    assert "conveyor.v1.TaskService" in {s.name for s in answer.list_services_response.service}


def test_a_removed_token_is_refused_within_5s_without_a_restart(
        secured: tuple[grpc.Channel, Path], cluster: Cluster) -> None:
    channel, path = secured
    producer = SECRETS["producer"]
    request = task_service_pb2.SubmitRequest(tasks=[task_pb2.TaskSpec(name="a.task")])
    assert call(channel, SUBMIT, producer, request)[0] == grpc.StatusCode.OK
    # A Pipeline stream opened before the change ends at its next message after it.
    stream = PipelineStream(channel, producer)
    assert stream.send(request).WhichOneof("reply") == "submit"

    path.write_text(path.read_text().replace("[[token]]", "[[token]] broken", 1))  # a broken edit: kept as it was
    scheduler = cluster.procs[0]
    wait_for(lambda: "the last good version stays in force" in scheduler.output(), 5, what="the broken edit logged")
    assert call(channel, SUBMIT, producer, request)[0] == grpc.StatusCode.OK

    others = {s: (role, [role], None) for role, s in SECRETS.items() if role != "producer"}
    auth_file(path, others)
    removed_at = time.monotonic()
    wait_for(lambda: call(channel, SUBMIT, producer, request)[0] == grpc.StatusCode.UNAUTHENTICATED, 5,
             what="the removed token to be refused")
    assert time.monotonic() - removed_at < 5
    assert call(channel, SUBMIT, SECRETS["admin"], request)[0] == grpc.StatusCode.OK
    with pytest.raises(grpc.RpcError) as err:
        stream.send(request)
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED  # type: ignore[attr-defined]
    assert "token 'producer' was removed" in (err.value.details() or "")  # type: ignore[attr-defined]
    assert "auth file changed: 3 tokens" in scheduler.output()


def test_a_removed_token_ends_open_watch_streams_within_5s(secured_target: tuple[str, Path],
                                                            secured: tuple[grpc.Channel, Path]) -> None:
    """WatchTask and WatchWorkflow send nothing while nothing changes, and the client sends
    nothing at all: the scheduler still ends them (UNAUTHENTICATED) once their token is gone,
    while another token's watch stays open."""
    (target, path), (channel, _) = secured_target, secured
    with Client(target, token=SECRETS["producer"]) as producer:
        task = producer.submit("a.task", queue="nobody-runs-this")
        workflow = producer.submit_workflow(signature("a.task", queue="nobody-runs-this"))
    tasks = task_service_pb2_grpc.TaskServiceStub(channel)
    workflows = workflow_service_pb2_grpc.WorkflowServiceStub(channel)
    reader = [("authorization", f"Bearer {SECRETS['reader']}")]
    watch_task = tasks.WatchTask(task_service_pb2.WatchTaskRequest(task_id=task.id), metadata=reader, timeout=30)
    watch_workflow = workflows.WatchWorkflow(workflow_service_pb2.WatchWorkflowRequest(workflow_id=workflow.id),
                                             metadata=reader, timeout=30)
    kept = tasks.WatchTask(task_service_pb2.WatchTaskRequest(task_id=task.id), timeout=30,
                           metadata=[("authorization", f"Bearer {SECRETS['producer']}")])
    assert next(watch_task).state == task_pb2.TASK_STATE_QUEUED
    assert next(watch_workflow).workflow.id == workflow.id
    assert next(kept).state == task_pb2.TASK_STATE_QUEUED

    auth_file(path, {s: (role, [role], None) for role, s in SECRETS.items() if role != "reader"})
    removed_at = time.monotonic()
    for stream in (watch_task, watch_workflow):
        with pytest.raises(grpc.RpcError) as err:
            next(stream)
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED, err.value  # type: ignore[attr-defined]
        assert "token 'reader' was removed" in (err.value.details() or "")  # type: ignore[attr-defined]
    assert time.monotonic() - removed_at < 5
    with Client(target, token=SECRETS["producer"]) as producer:
        producer.cancel(task.id)
    assert next(kept).state == task_pb2.TASK_STATE_CANCELLED  # the producer's watch went on
    kept.cancel()


class PipelineStream:
    """One TaskService.Pipeline stream, one call at a time."""

    def __init__(self, channel: grpc.Channel, secret: str) -> None:
        import queue  # noqa: PLC0415

        self._out: queue.Queue[task_service_pb2.PipelineRequest | None] = queue.Queue()
        self._next = 0
        stream = channel.stream_stream(PIPELINE.path, request_serializer=type(PIPELINE.request).SerializeToString,
                                       response_deserializer=PIPELINE.response.FromString)
        self._replies = stream(iter(self._out.get, None), metadata=[("authorization", f"Bearer {secret}")],
                               timeout=30)

    def send(self, submit: task_service_pb2.SubmitRequest | None = None,
             get_results: task_service_pb2.GetResultsRequest | None = None) -> task_service_pb2.PipelineResponse:
        self._next += 1
        msg = task_service_pb2.PipelineRequest(call_id=self._next)
        if submit is not None:
            msg.submit.CopyFrom(submit)
        if get_results is not None:
            msg.get_results.CopyFrom(get_results)
        self._out.put(msg)
        return next(self._replies)

    def close(self) -> None:
        self._out.put(None)


def test_an_invalid_auth_file_stops_start_up_naming_entry_and_field(tmp_path: Path, redis_url: str) -> None:
    path = tmp_path / "tokens.toml"
    path.write_text('[[token]]\nname = "web"\nsha256 = "' + "a" * 64 + '"\nroles = ["producer", "root"]\n')
    result = subprocess.run([sys.executable, "-m", "conveyor_scheduler", "--port", str(free_port()),
                             "--metrics-port", "0", "--redis-url", redis_url, "--auth-file", str(path)],
                            check=False, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stderr
    assert f"{path}: [[token]] #1 (name 'web'): roles: unknown role 'root'" in result.stderr


def test_denied_calls_are_counted_on_metrics(cluster: Cluster, redis_url: str, tmp_path: Path) -> None:
    path = auth_file(tmp_path / "tokens.toml", {SECRETS["reader"]: ("dash", ["reader"], None)})
    port = free_port()
    proc, target = cluster.scheduler(redis_url, "--auth-file", str(path), "--metrics-port", str(port))
    with grpc.insecure_channel(target) as channel:
        for _ in range(3):
            assert call(channel, SUBMIT, SECRETS["reader"])[0] == grpc.StatusCode.PERMISSION_DENIED
        assert call(channel, LIST_QUEUES, None)[0] == grpc.StatusCode.UNAUTHENTICATED
        assert call(channel, LIST_QUEUES, SECRETS["reader"])[0] == grpc.StatusCode.OK
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    counts = {(m, r): float(v) for m, r, v in re.findall(
        r'conveyor_auth_denied_total\{[^}]*conveyor_auth_reason="(\w+)"[^}]*rpc_method="([^"]+)"[^}]*\} (\S+)', text)}
    assert counts == {("role", "conveyor.v1.TaskService/Submit"): 3.0,
                      ("no_credential", "conveyor.v1.AdminService/ListQueues"): 1.0}, text
    # Logged once per caller, method and reason in 10 s, however many times it was refused.
    assert proc.output().count("denied conveyor.v1.TaskService/Submit to token 'dash'") == 1


def test_token_new_prints_a_secret_and_an_entry_the_scheduler_accepts(
        cluster: Cluster, redis_url: str, tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "conveyor.cli", "token", "new", "--name", "web",
                             "--role", "producer", "--queues", "payments, emails*"],
                            capture_output=True, text=True, timeout=60, check=True)
    secret = re.search(r"^secret: (\S+)$", result.stdout, re.MULTILINE).group(1)  # type: ignore[union-attr]
    assert len(secret) >= 40
    entry = result.stdout[result.stdout.index("[[token]]"):]
    assert secret not in entry and 'queues = ["payments", "emails*"]' in entry
    path = tmp_path / "tokens.toml"
    path.write_text(entry)
    _, target = cluster.scheduler(redis_url, "--auth-file", str(path))
    with grpc.insecure_channel(target) as channel:
        ok = task_service_pb2.SubmitRequest(tasks=[task_pb2.TaskSpec(name="t", queue="emails.eu")])
        assert call(channel, SUBMIT, secret, ok)[0] == grpc.StatusCode.OK
        other = task_service_pb2.SubmitRequest(tasks=[task_pb2.TaskSpec(name="t", queue="billing")])
        assert call(channel, SUBMIT, secret, other)[0] == grpc.StatusCode.PERMISSION_DENIED
        assert call(channel, LIST_QUEUES, secret)[0] == grpc.StatusCode.PERMISSION_DENIED
