"""Which Redis a URL names (redis_clients.py) and where FastCluster sends a command (fast_cluster.slot_of)."""

from __future__ import annotations

import pytest
from redis.crc import key_slot

from conveyor_scheduler.fast_cluster import FastCluster, slot_of
from conveyor_scheduler.fast_redis import FastRedis
from conveyor_scheduler.redis_clients import cluster_seeds, fast_client, is_cluster


@pytest.mark.parametrize(("url", "cluster"), [
    ("redis://127.0.0.1:6379/0", False),
    ("rediss://h:1", False),
    ("unix:///tmp/redis.sock", False),
    ("redis+cluster://a:1,b:2", True),
    ("rediss+cluster://u:p@a:1", True),
])
def test_is_cluster(url: str, cluster: bool) -> None:
    assert is_cluster(url) is cluster


def test_cluster_seeds_keep_credentials_and_query_for_every_node() -> None:
    first, seeds = cluster_seeds("rediss+cluster://user:p%40ss@n1:7001,n2:7002,n3?ssl_ca_certs=/ca.pem")
    assert first == "rediss://user:p%40ss@n1:7001?ssl_ca_certs=/ca.pem"
    assert seeds == [("n1", 7001), ("n2", 7002), ("n3", 6379)]


def test_cluster_seeds_take_ipv6_and_a_trailing_slash() -> None:
    first, seeds = cluster_seeds("redis+cluster://[::1]:7001,127.0.0.1:7002/")
    assert seeds == [("::1", 7001), ("127.0.0.1", 7002)]
    assert first.startswith("redis://")


@pytest.mark.parametrize("url", ["redis+cluster://a:1/3", "redis://a:1", "redis+cluster://"])
def test_cluster_seeds_refuse_what_a_cluster_cannot_be(url: str) -> None:
    with pytest.raises(ValueError):
        cluster_seeds(url)


def test_fast_client_by_scheme() -> None:
    assert isinstance(fast_client("redis://127.0.0.1:1/2"), FastRedis)
    assert isinstance(fast_client("redis+cluster://127.0.0.1:1"), FastCluster)
    assert fast_client("redis+sentinel://x") is None


def test_slot_of_routes_by_the_first_key_or_shard_channel() -> None:
    key = "cv:{q:emails}:t:1"
    assert slot_of(("EVALSHA", "sha", 2, key, "cv:{q:emails}:a", "arg")) == key_slot(key.encode())
    assert slot_of(("EVALSHA", "sha", 0, "arg")) is None
    assert slot_of(("HGETALL", key)) == key_slot(b"{q:emails}") == key_slot(key.encode())
    assert slot_of(("SPUBLISH", "cv:{q:emails}:wake", "x")) == key_slot(b"q:emails")
    assert slot_of(("PING",)) is None
    assert slot_of(("WAIT", 1, 100)) is None
    assert slot_of((b"MGET", b"cv:{q:a}:m:1", b"cv:{q:a}:m:2")) == key_slot(b"q:a")
