"""Where a Conveyor run keeps its state: one private redis-server (every scenario), or a private
Redis Cluster of 3 primaries with a replica each (the `cluster` scenario). ConveyorRunner sees
either through the same few things: the scheduler's URL, a client for reads, the processes to
meter, the Redis servers whose commandstats count, and where completions are announced.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import redis

from bench.common import private_redis
from bench.measure import unlimited_pubsub_buffers
from conveyor_scheduler.keys import DONE_CHANNEL, QueueKeys
from tests.redis_cluster import HOST, Node, RedisClusterServers


class SingleRedis:
    """One private redis-server (no AOF, no snapshots) on a free port."""

    topology = "single"

    def __init__(self, work_dir: Path, name: str) -> None:
        self.server, self.client = private_redis(work_dir, name)
        self.url = f"redis://127.0.0.1:{self.server.port}/0"

    @property
    def stats_clients(self) -> list[redis.Redis]:
        return [self.client]

    def pids(self) -> dict[str, int]:
        assert self.server.proc is not None
        return {"redis": self.server.proc.pid}

    def completions(self, queues: Sequence[str]) -> tuple[str, str, list[tuple[str, str]]]:
        """(url, classic channel, shard channels) of the queues' completions: cv:done."""
        return self.url, DONE_CHANNEL, []

    def flushall(self) -> None:
        self.client.flushall()

    def stop(self) -> None:
        self.client.close()
        self.server.stop()


class ClusterRedis:
    """A private Redis Cluster (tests/redis_cluster.py): 3 primaries, each with one replica. Its
    nodes are metered one by one, named by role: redis_p0..2 the primaries in slot order,
    redis_rK the replica of redis_pK."""

    topology = "cluster"

    def __init__(self, work_dir: Path, name: str) -> None:
        self.servers = RedisClusterServers(work_dir / name).start()
        self.url = self.servers.url
        self.client = self.servers.client()
        """redis-py's RedisCluster, for the runner's reads (pipelined HMGETs of one slot)."""
        for node in self.servers.nodes:
            unlimited_pubsub_buffers(node.conn)
        self.primaries = self.servers.primaries()
        self.roles: dict[str, Node] = {}
        for i, primary in enumerate(self.primaries):
            self.roles[f"redis_p{i}"] = primary
            for replica in self.servers.replicas(primary):
                self.roles[f"redis_r{i}"] = replica

    @property
    def stats_clients(self) -> list[redis.Redis]:
        return [p.conn for p in self.primaries]

    def pids(self) -> dict[str, int]:
        return {role: node.pid for role, node in self.roles.items() if node.pid is not None}

    def primary_of(self, queue: str) -> Node:
        """The primary that owns the queue's slot ({q:QUEUE})."""
        return self.servers.primary_for_slot(self.servers.slot_of(QueueKeys.of(queue).prefix))

    def role_of(self, queue: str) -> str:
        """The meter name of the queue's primary (redis_pK)."""
        owner = self.primary_of(queue)
        return next(role for role, node in self.roles.items() if node is owner)

    def queue_per_primary(self, prefix: str) -> list[str]:
        """One queue name PREFIX-i for each primary (in primary order): three queues whose tasks
        and events live on three different primaries."""
        names: dict[str, str] = {}
        for i in range(100_000):
            name = f"{prefix}-{i}"
            names.setdefault(self.role_of(name), name)
            if len(names) == len(self.primaries):
                return [names[f"redis_p{k}"] for k in range(len(self.primaries))]
        raise RuntimeError(f"no {prefix}-N queue names on {len(self.primaries)} primaries")

    def completions(self, queues: Sequence[str]) -> tuple[str, str, list[tuple[str, str]]]:
        """(url, classic channel, shard channels) of the queues' completions: each queue's shard
        channel cv:{q:QUEUE}:done on its primary (where the scheduler's FastCluster publishes),
        and the classic cv:done too, which a cluster passes to every node (where the scheduler
        publishes when its hot path is redis-py's client: Store.sharded is false then)."""
        shards = [(f"redis://{HOST}:{self.primary_of(q).port}", QueueKeys.of(q).shard_channel("done"))
                  for q in queues]
        return shards[0][0], DONE_CHANNEL, shards

    def flushall(self) -> None:
        self.servers.flushall()

    def stop(self) -> None:
        self.client.close()
        self.servers.stop()
