"""The Redis Cluster harness itself: a real cluster that answers, fails over and reshards, so the
scheduler's cluster tests can trust what it says."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis

from tests.redis_cluster import RedisClusterServers


def _owner_in_every_view(cluster: RedisClusterServers, slot: int) -> set[int]:
    """The port that each running node's CLUSTER SLOTS names as the primary of `slot`."""
    return {int(entry[2][1]) for node in cluster.nodes if node.alive()
            for entry in node.conn.execute_command("CLUSTER SLOTS") if entry[0] <= slot <= entry[1]}


def test_the_cluster_answers_on_keys_of_many_slots(cluster_clean: RedisClusterServers) -> None:
    keys = [f"key-{i}" for i in range(300)]
    assert len({cluster_clean.slot_of(k) for k in keys}) > 250
    with cluster_clean.client() as client:
        for i, key in enumerate(keys):
            client.set(key, f"value-{i}")
        assert [client.get(k) for k in keys] == [f"value-{i}".encode() for i in range(len(keys))]
    # The keys are spread over all three primaries, each holding only the slots it owns.
    held = [primary.conn.dbsize() for primary in cluster_clean.primaries()]
    assert sum(held) == len(keys) and all(held), held


def test_three_primaries_each_with_one_synced_replica(cluster_clean: RedisClusterServers) -> None:
    primaries = cluster_clean.primaries()
    assert len(primaries) == 3 and len(cluster_clean.replicas()) == 3
    for primary in primaries:
        [replica] = cluster_clean.replicas(primary)
        info = replica.conn.info("replication")
        assert (info["role"], info["master_port"], info["master_link_status"]) == ("slave", primary.port, "up")
    ports = {n.port for n in cluster_clean.nodes}
    assert len(ports) == 6 and 6379 not in ports and all(n.alive() for n in cluster_clean.nodes)
    assert cluster_clean.url == "redis+cluster://" + ",".join(f"127.0.0.1:{p.port}" for p in primaries)
    info = primaries[0].conn.cluster("INFO")
    assert (info["cluster_size"], info["cluster_known_nodes"], info["cluster_slots_ok"]) == ("3", "6", "16384")


def test_move_slot_moves_a_busy_queues_slot_with_its_keys(cluster_clean: RedisClusterServers) -> None:
    source, target = cluster_clean.primaries()[:2]
    name = cluster_clean.queue_name_in_first_slot(source)
    key = f"cv:{{q:{name}}}:r:0"
    slot = cluster_clean.slot_of(key)
    # The lowest slot `source` owns: the one `redis-cli --cluster reshard` moves.
    assert slot == min(entry[0] for entry in source.conn.execute_command("CLUSTER SLOTS")
                       if int(entry[2][1]) == source.port)
    with cluster_clean.client() as client:
        client.rpush(key, b"t1", b"t2", b"t3")
        cluster_clean.move_slot(slot, target)
        assert source.conn.execute_command("CLUSTER KEYSLOT", key) == slot
        assert _owner_in_every_view(cluster_clean, slot) == {target.port}
        assert client.lrange(key, 0, -1) == [b"t1", b"t2", b"t3"]  # followed the MOVED redirect
        count = [n.conn.execute_command("CLUSTER COUNTKEYSINSLOT", slot) for n in (source, target)]
        assert count == [0, 1]
        # Back again (now the target's lowest slot: redis-cli again), leaving the layout as it was.
        cluster_clean.move_slot(slot, source)
        assert _owner_in_every_view(cluster_clean, slot) == {source.port}
        assert client.lrange(key, 0, -1) == [b"t1", b"t2", b"t3"]


def test_move_slot_moves_a_slot_that_is_not_its_owners_lowest(cluster_clean: RedisClusterServers) -> None:
    key = "cv:{q:default}:r:0"
    slot = cluster_clean.slot_of(key)
    source = cluster_clean.primary_for_slot(slot)
    target = next(p for p in cluster_clean.primaries() if p.node_id != source.node_id)
    with cluster_clean.client() as client:
        client.hset(key, mapping={f"f{i}": i for i in range(250)})  # more than one MIGRATE batch
        client.set("cv:{q:default}:s", b"kept")
        cluster_clean.move_slot(slot, target)
        assert _owner_in_every_view(cluster_clean, slot) == {target.port}
        assert client.hlen(key) == 250 and client.get("cv:{q:default}:s") == b"kept"
        cluster_clean.move_slot(slot, source)
        assert _owner_in_every_view(cluster_clean, slot) == {source.port}
        assert client.hget(key, "f7") == b"7"


def test_a_killed_primary_fails_over_to_its_replica_without_losing_acknowledged_writes(
        private_cluster: RedisClusterServers) -> None:
    key = "cv:{q:doomed}:r:0"
    old = private_cluster.primary_for_slot(private_cluster.slot_of(key))
    [replica] = private_cluster.replicas(old)
    with redis.Redis(port=old.port, single_connection_client=True) as direct:
        direct.set(key, b"acknowledged")
        assert direct.wait(1, 5000) == 1
    with private_cluster.client() as client:
        for i in range(50):
            client.set(f"cv:{{q:doomed}}:t:{i}", i)
        private_cluster.wait_replicated(old)

        assert private_cluster.kill_primary_for(key) is old and not old.alive()
        new = private_cluster.wait_failover(old)
        assert new is replica and new.conn.info("replication")["role"] == "master"
        assert private_cluster.primary_for_slot(private_cluster.slot_of(key)) is new
        assert client.get(key) == b"acknowledged"
        assert [client.get(f"cv:{{q:doomed}}:t:{i}") for i in range(50)] == [str(i).encode() for i in range(50)]

    # Back on its port, the old primary rejoins as the new one's replica.
    private_cluster.restart(old)
    assert private_cluster.replicas(new) == [old]
    assert len(private_cluster.primaries()) == 3

    pids = [n.pid for n in private_cluster.nodes]
    private_cluster.stop()
    assert not any(Path(f"/proc/{pid}").exists() for pid in pids)


def test_a_failed_start_leaves_no_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cluster = RedisClusterServers(tmp_path)

    def fail(*args: str, timeout: float) -> None:
        raise AssertionError("redis-cli failed")

    monkeypatch.setattr(cluster, "_cli", fail)
    with pytest.raises(AssertionError, match="redis-cli failed"):
        cluster.start()
    assert len(cluster.nodes) == 6
    assert not any(n.alive() for n in cluster.nodes)
    assert not any(Path(f"/proc/{n.pid}").exists() for n in cluster.nodes if n.pid)
