"""AdminService.WhoAmI against a real scheduler: every role learns its own name, roles and
scope; a scoped token may ask too; without --auth-file the answer says auth is off."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from conveyor.v1 import admin_service_pb2, admin_service_pb2_grpc
from conveyor_scheduler import access
from tests.auth_calls import auth_file, bearer
from tests.harness import Cluster


def whoami(target: str, secret: str | None) -> admin_service_pb2.WhoAmIResponse:
    with grpc.insecure_channel(target) as channel:
        return admin_service_pb2_grpc.AdminServiceStub(channel).WhoAmI(
            admin_service_pb2.WhoAmIRequest(), metadata=bearer(secret), timeout=10)


def test_each_role_and_a_scoped_token_learn_who_they_are(cluster: Cluster, redis_url: str, tmp_path: Path) -> None:
    tokens = {f"{role}-secret-0123456789": (f"the-{role}", [role], None) for role in access.ROLES}
    tokens["scoped-secret-0123456789"] = ("team-a", ["reader", "producer"], ["a.*", "b"])
    _, target = cluster.scheduler(redis_url, "--auth-file", str(auth_file(tmp_path / "tokens.toml", tokens)))
    for role in access.ROLES:
        got = whoami(target, f"{role}-secret-0123456789")
        assert (got.name, list(got.roles), list(got.queues), got.auth_enabled) == (f"the-{role}", [role], [], True)
    got = whoami(target, "scoped-secret-0123456789")
    assert (got.name, list(got.roles), list(got.queues)) == ("team-a", ["producer", "reader"], ["a.*", "b"])
    with pytest.raises(grpc.RpcError) as refused:
        whoami(target, "not-a-known-token-4711")
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_without_auth_it_says_auth_is_off(scheduler: str) -> None:
    got = whoami(scheduler, None)
    assert not got.auth_enabled and not got.name and not got.roles
