"""FastCluster (the hot path's cluster client) against a real cluster: each command on the
primary that owns its slot, MOVED after a reshard, ASK during one, scripts loaded per node,
WAIT counting a replica, and shard-channel subscriptions that end when their slot moves."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable
from typing import Any

import pytest

from conveyor_scheduler.fast_cluster import ClusterSubscription, FastCluster
from conveyor_scheduler.fast_redis import NotReplicated, Script
from conveyor_scheduler.redis_clients import fast_client
from tests.redis_cluster import RedisClusterServers

INCR = "return redis.call('INCR', KEYS[1])"


def _cluster(url: str) -> FastCluster:
    conn = fast_client(url)
    assert isinstance(conn, FastCluster)
    return conn


def _run(coro_fn: Callable[[], Any]) -> Any:
    return asyncio.run(coro_fn())


def _queues_on_each_primary(cluster: RedisClusterServers) -> list[str]:
    """One queue name per primary, in primaries() order."""
    names: dict[int, str] = {}
    for i in range(10_000):
        owner = cluster.primary_for_slot(cluster.slot_of(f"{{q:q{i}}}")).port
        names.setdefault(owner, f"q{i}")
        if len(names) == 3:
            break
    return [names[p.port] for p in cluster.primaries()]


def test_each_command_reaches_its_slots_primary(cluster_clean: RedisClusterServers) -> None:
    queues = _queues_on_each_primary(cluster_clean)
    script = Script(_cluster(cluster_clean.url),
                    "redis.call('SET', KEYS[1], ARGV[1]); return redis.call('GET', KEYS[1])")

    async def main() -> list[Any]:
        conn = script.conn
        assert isinstance(conn, FastCluster)
        try:
            replies = await asyncio.gather(*(script([f"cv:{{q:{q}}}:x"], [q]) for q in queues))
            plain = f"cv:{{q:{queues[0]}}}:y"
            await conn.execute("SET", plain, "plain")
            replies.append(await conn.execute("GET", plain))
            return replies
        finally:
            await conn.aclose()

    assert _run(main) == [q.encode() for q in queues] + [b"plain"]
    for primary, queue in zip(cluster_clean.primaries(), queues, strict=True):
        assert primary.conn.get(f"cv:{{q:{queue}}}:x") == queue.encode()  # the key is on that very node


def test_moved_after_a_reshard_and_ask_during_one(cluster_clean: RedisClusterServers) -> None:
    source, target = cluster_clean.primaries()[:2]
    queue = cluster_clean.queue_name_in_first_slot(source)
    key, other = f"cv:{{q:{queue}}}:a", f"cv:{{q:{queue}}}:b"
    slot = cluster_clean.slot_of(key)

    async def main() -> None:
        conn = _cluster(cluster_clean.url)
        try:
            await conn.execute("SET", key, "1")
            await conn.execute("SET", other, "2")
            # Mid-migration: `key` already moved, `other` not yet. The source answers ASK for
            # `key`, which must be served by the target after ASKING, without changing the map.
            target.conn.execute_command("CLUSTER SETSLOT", slot, "IMPORTING", source.node_id)
            source.conn.execute_command("CLUSTER SETSLOT", slot, "MIGRATING", target.node_id)
            source.conn.execute_command("MIGRATE", "127.0.0.1", target.port, "", 0, 5000, "KEYS", key)
            assert await conn.execute("GET", key) == b"1"
            assert await conn.execute("GET", other) == b"2"
            # A script the importing node lacks: loaded there and run, each after its own ASKING.
            target.conn.script_flush()
            assert await Script(conn, "return redis.call('GET', KEYS[1])")([key], []) == b"1"
            assert conn.primaries() and source.port in {p for _, p in conn.primaries()}
            # The migration ends; the client's map still names the source: MOVED, then the target.
            source.conn.execute_command("MIGRATE", "127.0.0.1", target.port, "", 0, 5000, "KEYS", other)
            for node in (target, source, *cluster_clean.primaries()[2:]):
                node.conn.execute_command("CLUSTER SETSLOT", slot, "NODE", target.node_id)
            assert await conn.execute("GET", other) == b"2"
            assert await conn.execute("GET", key) == b"1"
        finally:
            await conn.aclose()

    _run(main)
    cluster_clean.wait_healthy(20)


def test_a_script_is_loaded_on_each_node_that_lacks_it_and_wait_counts_the_replica(
        cluster_clean: RedisClusterServers) -> None:
    queues = _queues_on_each_primary(cluster_clean)

    async def main() -> None:
        conn = _cluster(cluster_clean.url)
        script = Script(conn, INCR)
        try:
            for primary in cluster_clean.primaries():
                primary.conn.script_flush()
            for q in queues:  # NOSCRIPT on each primary in turn: loaded there, then run
                assert await script([f"cv:{{q:{q}}}:n"], []) == 1
            assert await script([f"cv:{{q:{queues[0]}}}:n"], [], replicas=1) == 2
            with pytest.raises(NotReplicated, match="NOREPLICAS"):  # only one replica exists
                await script([f"cv:{{q:{queues[0]}}}:n"], [], replicas=2)
        finally:
            await conn.aclose()

    _run(main)
    sha = hashlib.sha1(INCR.encode()).hexdigest()
    for primary, q, value in zip(cluster_clean.primaries(), queues, (b"3", b"1", b"1"), strict=True):
        assert primary.conn.script_exists(sha) == [True]
        assert primary.conn.get(f"cv:{{q:{q}}}:n") == value  # the call whose WAIT fell short still ran


def test_shard_channels_deliver_per_primary_and_a_moved_slot_ends_the_subscription(
        cluster_clean: RedisClusterServers) -> None:
    queues = _queues_on_each_primary(cluster_clean)
    source, target = cluster_clean.primaries()[:2]
    moving = cluster_clean.queue_name_in_first_slot(source)

    async def main() -> None:
        conn = _cluster(cluster_clean.url)
        got: list[tuple[bytes, bytes]] = []
        heard = asyncio.Event()

        def on_message(channel: bytes, data: bytes) -> None:
            got.append((channel, data))
            heard.set()

        sub = ClusterSubscription(conn, on_message)
        try:
            await sub.subscribe(["cv:control"])
            for q in [*queues, moving]:
                await sub.ssubscribe([f"cv:{{q:{q}}}:done", f"cv:{{q:{q}}}:wake"])
            for q in [*queues, moving]:
                await conn.execute("SPUBLISH", f"cv:{{q:{q}}}:done", q)
            await conn.execute("PUBLISH", "cv:control", "c")
            while len(got) < 5:
                heard.clear()
                await asyncio.wait_for(heard.wait(), 10)
            assert sorted(got) == sorted([(f"cv:{{q:{q}}}:done".encode(), q.encode()) for q in [*queues, moving]]
                                         + [(b"cv:control", b"c")])
            assert not sub.closed.done()
            # The slot moves: Redis unsubscribes its shard channels, which ends the subscription
            # (the event bus then subscribes everything again and every waiter re-reads).
            await asyncio.to_thread(cluster_clean.move_slot, cluster_clean.slot_of(f"{{q:{moving}}}"), target)
            await asyncio.wait_for(asyncio.shield(sub.closed), 10)
        finally:
            sub.close()
            await conn.aclose()

    _run(main)
