"""The auth file's rules, its reloading, and the roles table against the .proto comments."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest

from conveyor.cli_token import ROLES as CLI_ROLES
from conveyor.cli_token import entry
from conveyor.v1 import (
    admin_service_pb2,
    schedule_service_pb2,
    task_service_pb2,
    worker_service_pb2,
    workflow_service_pb2,
)
from conveyor_scheduler import access
from conveyor_scheduler.auth_file import AuthFileError, parse
from conveyor_scheduler.auth_source import AuthSource, sha256_hex

ROOT = Path(__file__).resolve().parents[2]
DIGEST = "a" * 64
SERVICES = {d.full_name: d for m in (task_service_pb2, worker_service_pb2, admin_service_pb2, schedule_service_pb2,
                                                  workflow_service_pb2)
            for d in m.DESCRIPTOR.services_by_name.values()}


def token(name: str = "web", digest: str = DIGEST, roles: str = '["producer"]', extra: str = "") -> str:
    return f'[[token]]\nname = "{name}"\nsha256 = "{digest}"\nroles = {roles}\n{extra}\n'


def test_a_valid_file_maps_digests_and_subjects() -> None:
    table = parse(token(extra='queues = ["payments", "emails*"]') + token("ops", "B" * 64, '["admin", "reader"]')
                  + '[[cert]]\nsubject = "CN=worker-1"\nroles = ["worker"]\n'
                  + '[[cert]]\nsubject = "CN=dash,O=Acme"\nroles = ["reader"]\n')
    web = table.tokens[DIGEST]
    assert (web.name, web.roles, web.queues) == ("web", frozenset({"producer"}), ("payments", "emails*"))
    assert table.tokens["b" * 64].roles == {"admin", "reader"} and table.tokens["b" * 64].queues is None
    assert web.may_use("payments") and web.may_use("emails.eu") and not web.may_use("payments2")
    # "CN=x" alone matches any certificate with that CN; a longer subject must match whole.
    assert table.by_certificate("CN=worker-1,OU=x,O=y", "worker-1").name == "CN=worker-1"  # type: ignore[union-attr]
    assert table.by_certificate("CN=dash,O=Acme", "dash").name == "CN=dash,O=Acme"  # type: ignore[union-attr]
    assert table.by_certificate("CN=dash,O=Other", "dash") is None
    assert table.again(web) is web


@pytest.mark.parametrize(("text", "message"), [
    (token(roles='["producer", "boss"]'), "[[token]] #1 (name 'web'): roles: unknown role 'boss'"),
    (token() + token(digest="c" * 64), "[[token]] #2 (name 'web'): name: another [[token]] has the name 'web'"),
    (token() + token("b"), "[[token]] #2 (name 'b'): sha256: token 'web' has the same digest"),
    (token(digest="xyz"), "[[token]] #1 (name 'web'): sha256: must be the 64 hex digits"),
    (token(extra="secret = 'x'"), "[[token]] #1 (name 'web'): secret: unknown field"),
    (token(roles="[]"), "[[token]] #1 (name 'web'): roles: must be a non-empty list"),
    (token(extra='queues = ["a, b"]'), "[[token]] #1 (name 'web'): queues: 'a, b' is not a queue glob"),
    ('[[token]]\nname = "x"\nroles = ["reader"]\n', "[[token]] #1 (name 'x'): sha256: missing"),
    ('[[cert]]\nsubject = "worker-1"\nroles = ["worker"]\n', "[[cert]] #1 (subject 'worker-1'): subject: must be"),
    ("[tokens]\n", "unknown table 'tokens'"),
    ("", "no [[token]] or [[cert]] entry"),
    ("[[token]\n", "not valid TOML"),
])
def test_an_invalid_file_is_refused_naming_entry_and_field(text: str, message: str) -> None:
    with pytest.raises(AuthFileError) as err:
        parse(text, "tokens.toml")
    assert str(err.value).startswith("tokens.toml: ")
    assert message in str(err.value)


def test_a_changed_file_is_reread_and_a_broken_edit_keeps_the_last_good_one(tmp_path: Path) -> None:
    path = tmp_path / "tokens.toml"
    path.write_text(token() + token("ops", "b" * 64))
    now = [0.0]
    source = AuthSource(path, clock=lambda: now[0])
    first = source.current()
    assert set(first.tokens) == {DIGEST, "b" * 64}
    path.write_text(token())
    assert source.current() is first  # looked at most once a second
    now[0] += 1.0
    assert set(source.current().tokens) == {DIGEST}
    good = source.current()
    path.write_text(token(roles='["nobody"]'))
    now[0] += 1.0
    assert source.current() is good
    path.unlink()
    now[0] += 1.0
    assert source.current() is good
    path.write_text(token("ops", "b" * 64))
    now[0] += 1.0
    assert set(source.current().tokens) == {"b" * 64}
    assert source.digest("s3cret") == hashlib.sha256(b"s3cret").hexdigest() == sha256_hex("s3cret")


def test_the_token_command_entry_is_what_the_scheduler_reads() -> None:
    table = parse(entry("web", "s3cret", ["producer", "worker"], ["payments", "emails*"]))
    principal = table.tokens[sha256_hex("s3cret")]
    assert (principal.name, principal.roles, principal.queues) == (
        "web", {"producer", "worker"}, ("payments", "emails*"))
    assert CLI_ROLES == access.ROLES


def test_the_table_names_every_method_of_every_service() -> None:
    for name, service in SERVICES.items():
        assert set(access.TABLE[name]) == {m.name for m in service.methods}, name
    assert set(access.TABLE) - set(SERVICES) == {"grpc.reflection.v1.ServerReflection",
                                                 "grpc.reflection.v1alpha.ServerReflection"}
    for roles in access.ALLOWED.values():
        assert access.ADMIN in roles and roles <= set(access.ROLES)
    assert access.is_public("/grpc.health.v1.Health/Check") and not access.is_public("/conveyor.v1.TaskService/Poll")
    assert access.roles_for("/conveyor.v1.NewService/Method") == {access.ADMIN}


def test_each_proto_service_comment_shows_the_table() -> None:
    for name, service in SERVICES.items():
        text = (ROOT / "proto" / service.file.name).read_text()
        comment = text[text.index("conveyor_scheduler/access.py"):text.index(f"service {service.name} {{")]
        shown = [re.sub(r"^//\s{3}", "", line) for line in comment.splitlines()[1:]]
        assert shown == access.comment_lines(name), name


def test_the_readme_shows_the_table() -> None:
    """README's roles table is access.py's, as `python -m conveyor_scheduler.access` prints it."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    assert access.markdown_table().strip() in readme


def test_a_carried_message_kind_is_its_methods_request_and_the_stream_allows_their_roles() -> None:
    """Pipeline's `call` oneof holds Submit's and GetResults' requests: each message kind needs its
    method's roles, and opening the stream needs one of them (no more, no less)."""
    assert access.CARRIED
    for service, streams in access.CARRIED.items():
        for stream, (oneof, kinds) in streams.items():
            request = SERVICES[service].methods_by_name[stream].input_type
            assert set(request.oneofs_by_name[oneof].fields) == {request.fields_by_name[k] for k in kinds}
            for kind, method in kinds.items():
                assert request.fields_by_name[kind].message_type is SERVICES[service].methods_by_name[method].input_type
            path = f"/{service}/{stream}"
            assert access.roles_for(path) == frozenset().union(*(access.TABLE[service][m] for m in kinds.values()))
            for kind, method in kinds.items():
                assert access.roles_for_message(path, kind) == access.roles_for(f"/{service}/{method}")
    assert access.READER in access.roles_for("/conveyor.v1.TaskService/Pipeline")
    assert access.READER not in access.roles_for_message("/conveyor.v1.TaskService/Pipeline", "submit")  # type: ignore[operator]
    assert access.roles_for_message("/conveyor.v1.TaskService/Pipeline", None) is None
    assert access.roles_for_message("/conveyor.v1.WorkerService/Connect", "hello") is None
