"""A real Redis Cluster for tests: six private redis-server processes (3 primaries, each with one
replica) on free ports of 127.0.0.1, made into a cluster by `redis-cli --cluster create`.

Never the machine's shared Redis and never a fake: failover, resharding and MOVED/ASK redirects
are the server's own. Everything waits on conditions that every node reports, never on sleeps.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, cast

import redis
from redis.backoff import NoBackoff
from redis.cluster import ClusterNode, RedisCluster
from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot
from redis.retry import Retry

from conveyor_scheduler.embedded_redis import find_redis_server
from tests.harness import RedisServer, free_port, wait_for

HOST = "127.0.0.1"
T = TypeVar("T")


@dataclass
class Node:
    """One redis-server of the cluster. Its role changes (failover, restart); its port and node id
    do not: nodes.conf stays in its data dir across restarts."""

    server: RedisServer
    bus_port: int
    node_id: str = ""
    # One immediate retry: a pooled connection is stale after a restart. redis-py's default
    # (10 retries with backoff) would turn every look at a dead node into seconds of waiting.
    conn: redis.Redis = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.conn = redis.Redis(HOST, self.port, socket_timeout=5, socket_connect_timeout=5,
                                retry=Retry(NoBackoff(), 1))

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def addr(self) -> str:
        return f"{HOST}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.server.proc.pid if self.server.proc else None

    @property
    def log(self) -> Path:
        return self.server.data_dir / "redis.log"

    def alive(self) -> bool:
        return self.server.proc is not None and self.server.proc.poll() is None


def _slots(seen: dict[str, Any]) -> set[int]:
    """The slots one CLUSTER NODES entry (as redis-py parses it) says its node owns."""
    return {s for r in seen["slots"] for s in range(int(r[0]), int(r[-1]) + 1)}


class RedisClusterServers:
    """Six redis-server processes made into one cluster: 3 primaries, each with a replica.

    Use start() / stop(), or `with RedisClusterServers(path).start() as cluster:` for a private
    instance that a destructive test (failover, restart) may leave in any state."""

    def __init__(self, data_dir: Path, *, node_timeout_ms: int = 1000, appendonly: bool = False) -> None:
        self.data_dir = data_dir
        self.node_timeout_ms = node_timeout_ms
        self.appendonly = appendonly
        self.nodes: list[Node] = []
        self._before_kill: dict[str, dict[str, dict[str, Any]]] = {}  # node id -> CLUSTER NODES then

    # --- life cycle ---------------------------------------------------------------------------------

    def start(self, timeout: float = 30) -> RedisClusterServers:
        """Starts the six nodes, creates the cluster and waits until it is healthy (stopping every
        node again if any of that fails)."""
        try:
            for i in range(6):
                node = Node(RedisServer(self.data_dir / f"node-{i}", appendonly=self.appendonly), free_port())
                self.nodes.append(node)
                node.server.start(*self._config(node))
                node.node_id = node.conn.execute_command("CLUSTER MYID").decode()
            self._cli("--cluster", "create", *(n.addr for n in self.nodes), "--cluster-replicas", "1",
                      "--cluster-yes", timeout=timeout)
            self.wait_healthy(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _config(self, node: Node) -> list[str]:
        # The bus port is chosen too: port + 10000, redis' default, may be taken or above 65535.
        return ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                "--cluster-port", str(node.bus_port), "--cluster-node-timeout", str(self.node_timeout_ms),
                "--cluster-allow-reads-when-down", "no",
                "--cluster-replica-validity-factor", "0",  # a replica may always take over, however stale
                "--repl-diskless-sync", "yes", "--repl-diskless-sync-delay", "0"]

    def stop(self, timeout: float = 10) -> None:
        """SIGTERM to every node, SIGKILL to those still there after `timeout`; returns once all exited."""
        procs = [n.server.proc for n in self.nodes if n.alive() and n.server.proc]
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for proc in procs:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        for node in self.nodes:
            node.conn.close()

    def __enter__(self) -> RedisClusterServers:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def restart(self, node: Node, timeout: float = 30) -> Node:
        """Starts a stopped node again on its port; it rejoins (a former primary as a replica of
        the node that took its slots) and this returns once the whole cluster is healthy again."""
        node.server.start(*self._config(node))
        self.wait_healthy(timeout)
        return node

    # --- what tests connect to ----------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The scheduler's cluster URL, seeded with the current primaries."""
        return "redis+cluster://" + ",".join(p.addr for p in self.primaries())

    def client(self) -> RedisCluster:
        """A cluster client (bytes replies) seeded with every live node; the caller closes it."""
        seeds = [ClusterNode(HOST, n.port) for n in self.nodes if n.alive()]
        return RedisCluster(startup_nodes=seeds, decode_responses=False)

    def flushall(self) -> None:
        """Empties every primary (their replicas follow), for isolation between tests."""
        for primary in self.primaries():
            primary.conn.flushall()

    # --- topology ----------------------------------------------------------------------------------

    def _view(self) -> dict[str, dict[str, Any]]:
        """CLUSTER NODES as one live node sees it, keyed by "host:port"."""
        for node in self.nodes:
            if node.alive():
                return node.conn.cluster("NODES")  # type: ignore[no-any-return]
        raise AssertionError("no node of the cluster is running")

    def _node(self, addr: str) -> Node:
        return next(n for n in self.nodes if n.addr == addr.split("@", maxsplit=1)[0])

    def primaries(self) -> list[Node]:
        """The running primaries that own slots, ordered by their lowest slot."""
        owners = [(min(_slots(seen)), addr) for addr, seen in self._view().items()
                  if "master" in seen["flags"] and seen["slots"]]
        return [n for n in (self._node(addr) for _, addr in sorted(owners)) if n.alive()]

    def replicas(self, of: Node | None = None) -> list[Node]:
        """The running replicas (of one primary, given `of`)."""
        return [self._node(addr) for addr, seen in self._view().items()
                if "slave" in seen["flags"] and (of is None or seen["master_id"] == of.node_id)
                and self._node(addr).alive()]

    @staticmethod
    def slot_of(key: str | bytes) -> int:
        return int(key_slot(key.encode() if isinstance(key, str) else key))

    def primary_for_slot(self, slot: int) -> Node:
        for addr, seen in self._view().items():
            if "master" in seen["flags"] and slot in _slots(seen):
                return self._node(addr)
        raise AssertionError(f"no primary owns slot {slot}")

    # --- waiting on the cluster ----------------------------------------------------------------------

    def _wait(self, predicate: Callable[[], T], timeout: float, what: str) -> T:
        """wait_for with every node's log tail in the failure."""
        try:
            return wait_for(predicate, timeout, interval=0.05, what=what)
        except AssertionError as e:
            raise AssertionError(f"{e}\n{self.logs()}") from None

    def _agreed(self, nodes: list[Node]) -> bool:
        """Each of `nodes` is up, says cluster_state:ok with every slot served, and gives the same
        CLUSTER SLOTS reply (owners and their replicas)."""
        try:
            replies = []
            for node in nodes:
                info = node.conn.cluster("INFO")
                if info["cluster_state"] != "ok" or int(info["cluster_slots_ok"]) != REDIS_CLUSTER_HASH_SLOTS:
                    return False
                replies.append(sorted(node.conn.execute_command("CLUSTER SLOTS")))
        except redis.exceptions.RedisError:  # not up yet, loading, or just restarted
            return False
        return all(r == replies[0] for r in replies)

    def _healthy(self) -> bool:
        """All six nodes up and agreed, three primaries, each with one replica whose link is up."""
        if not all(n.alive() for n in self.nodes) or not self._agreed(self.nodes):
            return False
        try:
            primaries = self.primaries()
            for primary in primaries:
                if primary.conn.info("replication")["connected_slaves"] != 1:
                    return False
                replicas = self.replicas(primary)
                if len(replicas) != 1 or replicas[0].conn.info("replication")["master_link_status"] != "up":
                    return False
        except redis.exceptions.RedisError:
            return False
        return len(primaries) == 3

    def wait_healthy(self, timeout: float = 30) -> None:
        self._wait(self._healthy, timeout, "the cluster to be healthy (6 nodes agreed, 3 primaries with a replica)")

    def wait_replicated(self, primary: Node, timeout: float = 10) -> None:
        """Waits until the replicas of `primary` have applied every write it took before this call,
        so killing it loses none of them (a test cannot make the scheduler's connections send WAIT)."""
        offset = primary.conn.info("replication")["master_repl_offset"]
        replicas = self.replicas(primary)
        assert replicas, f"{primary.addr} has no replica"
        self._wait(lambda: all(r.conn.info("replication")["slave_repl_offset"] >= offset for r in replicas),
                   timeout, f"the replicas of {primary.addr} to reach offset {offset}")

    # --- faults and resharding -----------------------------------------------------------------------

    def kill_primary_for(self, key_or_slot: str | int) -> Node:
        """SIGKILLs the primary that owns a key's slot (or the slot) and returns it."""
        slot = key_or_slot if isinstance(key_or_slot, int) else self.slot_of(key_or_slot)
        primary = self.primary_for_slot(slot)
        self._before_kill[primary.node_id] = self._view()
        primary.server.stop(hard=True)
        return primary

    def wait_failover(self, old_primary: Node, timeout: float = 30) -> Node:
        """Waits until a replica of `old_primary` (killed by kill_primary_for) owns all its slots and
        every surviving node is agreed and ok; returns that new primary."""
        before = self._before_kill[old_primary.node_id]
        slots = _slots(before[old_primary.addr])
        replica_ids = {seen["node_id"] for seen in before.values() if seen["master_id"] == old_primary.node_id}

        def promoted() -> Node | None:
            if not self._agreed([n for n in self.nodes if n.alive()]):
                return None
            owner = self.primary_for_slot(min(slots))
            seen = self._view()[owner.addr]
            return owner if owner.node_id in replica_ids and slots <= _slots(seen) else None

        return cast(Node, self._wait(promoted, timeout, f"a replica of {old_primary.addr} to take over its slots"))

    def move_slot(self, slot: int, to_primary: Node, timeout: float = 30) -> None:
        """Moves one slot, with its keys, to another primary and waits until every node agrees.

        `redis-cli --cluster reshard --cluster-slots 1` cannot be told which slot: it moves the
        source's lowest-numbered slot (its reshard table walks slots 0..16383 and takes the first
        the source owns). So the slot is moved by redis-cli when it is its owner's lowest (see
        queue_name_in_first_slot), and otherwise by the manual sequence redis-cli runs itself."""
        source = self.primary_for_slot(slot)
        if source.node_id == to_primary.node_id:
            return
        # redis-cli refuses to reshard while the nodes disagree (e.g. right after a failover).
        self._wait(lambda: self._agreed([n for n in self.nodes if n.alive()]), timeout, "the nodes to agree")
        if slot == min(_slots(self._view()[source.addr])):
            self._cli("--cluster", "reshard", source.addr, "--cluster-from", source.node_id,
                      "--cluster-to", to_primary.node_id, "--cluster-slots", "1", "--cluster-yes", timeout=timeout)
        else:
            self._migrate(slot, source, to_primary)
        self._wait(lambda: self._agreed([n for n in self.nodes if n.alive()])
                   and self.primary_for_slot(slot).node_id == to_primary.node_id,
                   timeout, f"every node to see slot {slot} on {to_primary.addr}")

    def _migrate(self, slot: int, source: Node, target: Node) -> None:
        """The documented live migration of one slot (CLUSTER SETSLOT's docs, "Redis Cluster live
        resharding"): IMPORTING on the target, MIGRATING on the source, MIGRATE its keys in
        batches, then SETSLOT NODE on the target, the source and the other primaries."""
        target.conn.execute_command("CLUSTER SETSLOT", slot, "IMPORTING", source.node_id)
        source.conn.execute_command("CLUSTER SETSLOT", slot, "MIGRATING", target.node_id)
        while keys := source.conn.execute_command("CLUSTER GETKEYSINSLOT", slot, 100):
            source.conn.execute_command("MIGRATE", HOST, target.port, "", 0, 5000, "KEYS", *keys)
        others = [p for p in self.primaries() if p.node_id not in (source.node_id, target.node_id)]
        for node in (target, source, *others):
            node.conn.execute_command("CLUSTER SETSLOT", slot, "NODE", target.node_id)

    def queue_name_in_first_slot(self, primary: Node, prefix: str = "busy") -> str:
        """A queue name whose keys (cv:{q:NAME}:...) hash to the lowest slot `primary` owns: the
        slot that move_slot moves with `redis-cli --cluster reshard`."""
        slot = min(_slots(self._view()[primary.addr]))
        for i in range(1_000_000):  # 16384 tries on average
            name = f"{prefix}-{i}"
            if self.slot_of(f"cv:{{q:{name}}}:r:0") == slot:
                return name
        raise AssertionError(f"no {prefix}-N queue name hashes to slot {slot}")

    # --- diagnostics -------------------------------------------------------------------------------

    def logs(self, lines: int = 30) -> str:
        """The last lines of every node's log, for failure reports."""
        parts = []
        for node in self.nodes:
            text = node.log.read_text(errors="replace").splitlines()[-lines:] if node.log.exists() else []
            state = "running" if node.alive() else "stopped"
            parts.append(f"----- redis node {node.addr} {node.node_id[:8]} ({state}) -----\n" + "\n".join(text))
        return "\n".join(parts)

    def _cli(self, *args: str, timeout: float) -> None:
        cli = shutil.which("redis-cli", path=str(Path(find_redis_server()).parent)) or shutil.which("redis-cli")
        assert cli, "redis-cli not found next to redis-server nor on PATH"
        done = subprocess.run([cli, *args], capture_output=True, text=True, timeout=timeout, check=False,
                              stdin=subprocess.DEVNULL)
        if done.returncode != 0 or "[ERR]" in done.stdout:
            raise AssertionError(f"redis-cli {' '.join(args[:2])} failed ({done.returncode}):\n"
                                 f"{done.stdout[-3000:]}{done.stderr[-2000:]}\n{self.logs()}")
