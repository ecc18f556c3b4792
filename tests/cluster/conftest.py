"""Fixtures for tests against a real Redis Cluster (tests/redis_cluster.py): one cluster for the
session, flushed before each test, and private ones for tests that kill or restart nodes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.redis_cluster import RedisClusterServers

HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Marks every test under tests/cluster/ `cluster`: `-m "not cluster"` skips them all."""
    for item in items:
        if item.path.is_relative_to(HERE):
            item.add_marker(pytest.mark.cluster)


def _report(cluster: RedisClusterServers, request: pytest.FixtureRequest) -> None:
    rep = getattr(request.node, "rep_call", None)  # set by tests/conftest.py's makereport hook
    if rep is not None and rep.failed:
        print(cluster.logs())


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterServers]:
    cluster = RedisClusterServers(tmp_path_factory.mktemp("redis-cluster")).start()
    yield cluster
    cluster.stop()


@pytest.fixture
def cluster_clean(redis_cluster: RedisClusterServers, request: pytest.FixtureRequest) -> Iterator[RedisClusterServers]:
    """The session's cluster, healthy (a test before may have broken it: fail here, with its logs)
    and empty."""
    redis_cluster.wait_healthy(10)
    redis_cluster.flushall()
    yield redis_cluster
    _report(redis_cluster, request)


@pytest.fixture
def private_cluster(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[RedisClusterServers]:
    """A cluster of this test's own, which it may leave in any state (about 2 s to start)."""
    with RedisClusterServers(tmp_path / "redis-cluster").start() as cluster:
        yield cluster
        _report(cluster, request)


@pytest.fixture
def redis_url(cluster_clean: RedisClusterServers) -> str:
    """The suites re-run here (test_*_on_cluster.py) get the session's cluster, emptied, instead of
    a database of the one-server Redis."""
    return cluster_clean.url
