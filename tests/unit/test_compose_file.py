"""compose.yaml stays in step with `make certs` and the services' flags.

No Docker engine runs where the tests run, so compose itself is not started here;
tests/e2e/test_production_files.py runs the same files with the same flags as local processes.
This checks what would break the stack silently: a mounted file `make certs` does not write, a
CONVEYOR_* variable no service reads, a flag a command does not have.
"""

from __future__ import annotations

import re
import subprocess
import sys
from typing import Any

import click
import pytest
import yaml

from conveyor.channels import SECURITY_ENV
from conveyor_dashboard import cli as dashboard_cli
from conveyor_scheduler import cli as scheduler_cli
from conveyor_worker import cli as worker_cli
from tests.harness import ROOT

COMPOSE = ROOT / "compose.yaml"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    out = tmp_path_factory.mktemp("certs")
    subprocess.run([sys.executable, str(ROOT / "scripts" / "make_certs.py"), "--out", str(out)], check=True,
                   capture_output=True)
    return {p.name for p in out.iterdir()}


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


def _options(command: click.Command) -> tuple[set[str], set[str]]:
    flags = {o for p in command.params for o in getattr(p, "opts", [])}
    envvars = {p.envvar for p in command.params if isinstance(getattr(p, "envvar", None), str)}
    return flags, envvars


def test_every_certificate_file_compose_uses_is_one_make_certs_writes(compose: dict[str, Any], made: set[str]) -> None:
    used: set[str] = set()
    for name, service in compose["services"].items():
        for text in _strings(service):
            used |= set(re.findall(r"/certs/([\w.-]+)", text))
        for env_file in _strings(service.get("env_file", [])):
            assert env_file.startswith("deploy/certs/"), (name, env_file)
            used.add(env_file.removeprefix("deploy/certs/"))
    assert used, "compose.yaml mounts no certificates"
    assert used <= made, f"compose.yaml uses files make certs does not write: {sorted(used - made)}"


def test_every_conveyor_variable_and_flag_is_one_the_service_reads(compose: dict[str, Any]) -> None:
    dashboard = {o for action in dashboard_cli.parser()._actions for o in action.option_strings}
    programs = {"conveyor-scheduler": _options(scheduler_cli.main), "conveyor-worker": _options(worker_cli.main),
                "conveyor-dashboard": (dashboard, set())}
    known = {var for _, envvars in programs.values() for var in envvars} | set(SECURITY_ENV)
    for name, service in compose["services"].items():
        command = service.get("command")
        if not isinstance(command, str) or command.split()[0] not in programs:
            continue
        flags, _ = programs[command.split()[0]]
        for word in command.split()[1:]:
            if word.startswith("--"):
                assert word in flags, f"{name}: {word} is not a flag of {command.split()[0]}"
        for var in service.get("environment", {}):  # the shared blocks set some for the other program
            if var.startswith("CONVEYOR_"):
                assert var in known, f"{name}: no Conveyor program reads {var}"
        check = service.get("healthcheck", {}).get("test", [])
        for word in check[2:] if check[:2] == ["CMD", command.split()[0]] else []:
            if word.startswith("--"):
                assert word in flags, f"{name}: health check flag {word}"


def test_the_cluster_profile_stands_apart_and_seeds_its_schedulers_with_its_nodes(compose: dict[str, Any]) -> None:
    services = compose["services"]
    cluster = {name for name, s in services.items() if s.get("profiles") == ["cluster"]}
    nodes = {f"redis-c{i}" for i in range(1, 7)}
    assert nodes | {"redis-cluster-init", "cluster-scheduler-1", "cluster-scheduler-2"} <= cluster
    for name, service in services.items():  # `docker compose up` without the profile starts what it did
        if name not in cluster:
            assert not set(service.get("depends_on", {})) & cluster, name
    init = services["redis-cluster-init"]
    assert set(init["depends_on"]) == nodes
    addresses = {s["networks"]["redis-cluster"]["ipv4_address"] + ":6379" for n, s in services.items() if n in nodes}
    assert set(init["environment"]["REDIS_CLUSTER_NODES"].split()) == addresses
    for name in ("cluster-scheduler-1", "cluster-scheduler-2"):
        url = services[name]["environment"]["CONVEYOR_REDIS_URL"]
        assert url.startswith("redis+cluster://"), url
        assert {seed.rsplit(":", 1)[0] for seed in url.removeprefix("redis+cluster://").split(",")} <= nodes
        assert "redis-cluster-init" in services[name]["depends_on"] and "redis" not in services[name]["depends_on"]
