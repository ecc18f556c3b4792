"""Shared fixtures: one private Redis per session, a fresh database and process set per test."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from conveyor import Client
from tests.harness import Cluster, CompletionCounter, RedisServer


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    return redis_server.url()


@pytest.fixture
def cluster(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Cluster]:
    c = Cluster(tmp_path)
    yield c
    c.stop_all()
    failed = getattr(request.node, "rep_call", None)
    if failed is not None and failed.failed:
        for proc in c.procs:
            print(f"----- {proc.name} log -----\n{proc.output()[-6000:]}")


@pytest.fixture
def scheduler(cluster: Cluster, redis_url: str) -> str:
    """Address of one scheduler replica on this test's database."""
    return cluster.scheduler(redis_url)[1]


@pytest.fixture
def client(scheduler: str) -> Iterator[Client]:
    with Client(scheduler) as c:
        yield c


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):
    rep = yield
    setattr(item, f"rep_{rep.when}", rep)
    return rep


@pytest.fixture
def completions(redis_url: str) -> Iterator[Callable[[str], CompletionCounter]]:
    """Makes CompletionCounters that are stopped at teardown even when the test fails."""
    made: list[CompletionCounter] = []

    def make(url: str) -> CompletionCounter:
        made.append(CompletionCounter(url))
        return made[-1]

    yield make
    for counter in made:
        counter.stop()
