"""The hot path's connection to a Redis Cluster: FastRedis connections, one per primary, and
the slot map that routes each command to the primary that owns its key's slot.

Why not a maintained cluster client here (redis-py's RedisCluster serves everything off the
hot path): `python -m bench --only cluster --systems conveyor` measured, per submit.lua call from
64 concurrent callers on a 3-primary cluster, 60 µs of client CPU here against 282 (redis-py),
207 (valkey-glide) and 505 (coredis); with `--redis-client redis-py` the scheduler spent
1.23-1.61x the CPU per task (batch) and 1.26-1.43x (ordinary). Its throughput on a shared 2-core
machine came out 0.72-0.99x (batch) and 0.80-1.15x (ordinary), straddling the 15% line with the
scheduler at half a core; a scheduler that owns a saturated core should lose throughput as its
CPU per task grows (an estimate: two cores cannot saturate the scheduler alone).

Routing: a command goes to the owner of its first key's slot (EVALSHA's first KEYS entry;
SPUBLISH's channel); keyless commands go to any primary. Every Conveyor script keeps all its
keys and shard channels in one hash tag, so one slot, one node.
- MOVED slot host:port: the slot map changed (a reshard finished, a failover): that slot is
  pointed at the new owner at once, the whole map is re-read in the background, and the
  command is sent again there.
- ASK slot host:port: the slot is being migrated and this key already moved: ASKING, then the
  command, in one write to the importing node, without touching the map.
- A lost connection (a primary died): the map is re-read from any node that answers, and the
  command is sent again, as FastRedis does on one server. Until a replica has taken over,
  that fails and the caller sees UNAVAILABLE, as for a Redis restart.
- TRYAGAIN (a multi-key command while the slot's keys are split between two nodes by a move):
  sent again after a short pause, for up to ~2.5 s; then, like CLUSTERDOWN, the caller sees a
  transient error (fast_redis.TRANSIENT_REPLIES), backs off and retries.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Any

from redis.crc import key_slot
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from conveyor_scheduler.fast_redis import (
    FastRedis,
    Script,
    Subscriber,
    TransientRedisError,
    open_subscriber,
    run_script,
)

log = logging.getLogger(__name__)
SLOTS = 16384
MAX_REDIRECTS = 5
TRYAGAIN = 30
"""TRYAGAIN replies waited out (backing off to 0.1 s: about 2.5 s in all) before the caller sees one."""
KEYLESS = frozenset({b"PING", b"WAIT", b"SCRIPT", b"INFO", b"CLUSTER", b"PUBLISH"})


def slot_of(args: Sequence[Any]) -> int | None:
    """The slot a command's first key (or shard channel) hashes to; None for a keyless command."""
    name = args[0].upper() if isinstance(args[0], bytes) else str(args[0]).upper().encode()
    if name in (b"EVALSHA", b"EVAL", b"FCALL"):
        return key_slot(_bytes(args[3])) if int(args[2]) > 0 else None
    if name in KEYLESS or len(args) < 2:
        return None
    return key_slot(_bytes(args[1]))


def _bytes(value: Any) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode()


class FastCluster:
    """FastRedis' interface (`execute`, `pipeline`, `run_script`) over a Redis Cluster."""

    def __init__(self, seed_url: str, seeds: Sequence[tuple[str, int]], *, wait_timeout_ms: int = 1000) -> None:
        scheme, _, rest = seed_url.partition("://")
        self._userinfo = rest.rpartition("@")[0]
        self._scheme = scheme
        self._query = rest.partition("?")[2]
        self.wait_timeout_ms = wait_timeout_ms
        self._seeds = list(seeds)
        self._nodes: dict[tuple[str, int], FastRedis] = {}
        self._owner: list[tuple[str, int] | None] = [None] * SLOTS
        self._refreshing: asyncio.Task[None] | None = None

    # -- topology ----------------------------------------------------------------------------

    def node(self, address: tuple[str, int]) -> FastRedis:
        """The (lazily connected) FastRedis of one node."""
        conn = self._nodes.get(address)
        if conn is None:
            host, port = address
            creds = f"{self._userinfo}@" if self._userinfo else ""
            url = f"{self._scheme}://{creds}{host}:{port}" + (f"?{self._query}" if self._query else "")
            conn = self._nodes[address] = FastRedis(url, wait_timeout_ms=self.wait_timeout_ms)
        return conn

    def primaries(self) -> list[tuple[str, int]]:
        return sorted({a for a in self._owner if a is not None})

    async def refresh(self) -> None:
        """Re-reads the slot map (CLUSTER SLOTS) from the first node that answers; concurrent
        callers share one read."""
        if self._refreshing is None or self._refreshing.done():
            self._refreshing = asyncio.ensure_future(self._read_slots())
        await asyncio.shield(self._refreshing)

    def _refresh_soon(self) -> None:
        if self._refreshing is None or self._refreshing.done():
            self._refreshing = asyncio.ensure_future(self._read_slots())
            self._refreshing.add_done_callback(lambda t: t.cancelled() or t.exception())  # logged by callers

    async def _read_slots(self) -> None:
        candidates = list(dict.fromkeys([*self.primaries(), *self._nodes, *self._seeds]))
        error: Exception | None = None
        for address in candidates:
            try:
                reply = await self.node(address).execute("CLUSTER", "SLOTS")
            except (RedisConnectionError, ResponseError, OSError) as exc:
                error = exc
                continue
            owner: list[tuple[str, int] | None] = [None] * SLOTS
            for start, end, primary, *_ in reply:
                host = primary[0].decode() if primary[0] else address[0]
                owner[start:end + 1] = [(host, int(primary[1]))] * (end - start + 1)
            self._owner = owner
            return
        raise RedisConnectionError(f"no Redis Cluster node answered CLUSTER SLOTS: {error}")

    async def _node_for(self, slot: int | None) -> FastRedis:
        if slot is None:
            primaries = self.primaries()
            if not primaries:
                await self.refresh()
                primaries = self.primaries() or [self._seeds[0]]
            return self.node(primaries[0])
        address = self._owner[slot]
        if address is None:
            await self.refresh()
            address = self._owner[slot]
            if address is None:
                raise RedisConnectionError(f"no Redis Cluster node serves slot {slot} (CLUSTERDOWN)")
        return self.node(address)

    # -- commands ----------------------------------------------------------------------------

    async def send(self, slot: int | None, commands: Sequence[tuple[Any, ...]], durable: bool = False
                   ) -> list[Any]:
        """`commands` (all of one slot) to the slot's owner in one write, following redirections;
        `durable`: on the node's connection for writes that WAIT (FastRedis.durable)."""
        asking: FastRedis | None = None
        attempt = retried = 0
        while True:
            owner = self._owner[slot] if slot is not None and asking is None else None
            conn = asking or (self.node(owner) if owner is not None else await self._node_for(slot))
            if durable:
                conn = conn.durable()
            try:  # after ASK, each command goes with its own ASKING (the flag lasts one command)
                replies = await conn.pipeline(
                    [c for command in commands for c in (("ASKING",), command)] if asking else commands)
            except RedisConnectionError:  # FastRedis retried already: that node is gone
                attempt += 1
                if attempt > MAX_REDIRECTS:
                    raise
                await asyncio.sleep(0.05 * 2 ** attempt)
                try:
                    await self.refresh()
                except RedisConnectionError as exc:
                    log.warning("Redis Cluster: %s", exc)
                asking = None
                continue
            if asking:
                replies = replies[1::2]
            first = next((r for r in replies if isinstance(r, (ResponseError, TransientRedisError))
                          and str(r).startswith(("MOVED ", "ASK ", "TRYAGAIN "))), None)
            if isinstance(first, TransientRedisError) and retried < TRYAGAIN:
                # The slot is migrating and its keys are split between two nodes: the script
                # would not run on either until the move ends, which takes moments.
                retried += 1
                await asyncio.sleep(min(0.005 * 2 ** retried, 0.1))
                asking = None
                continue
            if isinstance(first, ResponseError) and str(first).startswith(("MOVED ", "ASK ")):
                attempt += 1
                if attempt > MAX_REDIRECTS:
                    raise RedisConnectionError(f"too many Redis Cluster redirections for slot {slot}: {first}")
                code, moved_slot, target = str(first).split(" ")[:3]
                host, _, port = target.rpartition(":")
                address = (host or conn.address[0], int(port))
                if code == "MOVED":
                    self._owner[int(moved_slot)] = address
                    self._refresh_soon()
                    asking = None
                else:
                    asking = self.node(address)
                continue
            return replies

    async def execute(self, *args: Any) -> Any:
        reply = (await self.send(slot_of(args), (args,)))[0]
        if isinstance(reply, Exception):
            raise reply
        return reply

    async def pipeline(self, commands: Sequence[tuple[Any, ...]]) -> list[Any]:
        """Commands of one slot (the first one's), in one write."""
        return await self.send(slot_of(commands[0]), commands)

    async def run_script(self, script: Script, keys: Sequence[str], args: Sequence[Any], replicas: int = 0) -> Any:
        slot = key_slot(_bytes(keys[0])) if keys else None
        return await run_script(lambda commands: self.send(slot, commands, durable=replicas > 0), script, keys,
                                args, replicas, self.wait_timeout_ms)

    async def any_node(self) -> FastRedis:
        """A primary's connection (for keyless work: a classic SUBSCRIBE)."""
        return await self._node_for(None)

    async def aclose(self) -> None:
        for conn in self._nodes.values():
            await conn.aclose()
        self._nodes.clear()


class ClusterSubscription:
    """The event bus's pub/sub on a cluster: classic channels (fleet-wide events, which a cluster
    passes to every node) on one node, and shard channels (SSUBSCRIBE, one queue's events,
    which stay on the primary that owns the queue's slot) on each owner. Channels can be added
    while it runs. Any loss (a connection, a slot moving away: Redis then unsubscribes the
    channel) completes `closed`: the bus starts over and everyone re-reads Redis."""

    def __init__(self, cluster: FastCluster, on_message: Callable[[bytes, bytes], None]) -> None:
        self.cluster = cluster
        self.on_message = on_message
        self.closed: asyncio.Future[Exception | None] = asyncio.get_running_loop().create_future()
        self._subscribers: dict[tuple[str, int], Subscriber] = {}
        self._opening: dict[tuple[str, int], asyncio.Task[Subscriber]] = {}

    async def subscribe(self, channels: Sequence[str]) -> None:
        """Classic channels, on any one node."""
        node = await self.cluster.any_node()
        await (await self._subscriber(node.address)).request("SUBSCRIBE", channels)

    async def ssubscribe(self, channels: Sequence[str]) -> None:
        """Shard channels of one slot, on its owner; returns once Redis confirmed them."""
        slot = key_slot(_bytes(channels[0]))
        for attempt in range(MAX_REDIRECTS + 1):
            node = await self.cluster._node_for(slot)
            try:
                await (await self._subscriber(node.address)).request("SSUBSCRIBE", channels)
                return
            except ResponseError as exc:  # MOVED: a stale map
                if not str(exc).startswith("MOVED ") or attempt == MAX_REDIRECTS:
                    raise
                await self.cluster.refresh()

    async def _subscriber(self, address: tuple[str, int]) -> Subscriber:
        if self.closed.done():
            raise RedisConnectionError("the subscription is closed")
        sub = self._subscribers.get(address)
        if sub is not None:
            return sub
        opening = self._opening.get(address)
        if opening is None:
            opening = self._opening[address] = asyncio.ensure_future(
                open_subscriber(self.cluster.node(address), self.on_message))
        try:
            sub = await asyncio.shield(opening)
        finally:
            self._opening.pop(address, None)
        if address not in self._subscribers:
            self._subscribers[address] = sub
            sub.closed.add_done_callback(self._lost)
        return self._subscribers[address]

    def _lost(self, closed: asyncio.Future[Exception | None]) -> None:
        if not self.closed.done():
            self.closed.set_result(closed.result())
        self.close()

    def close(self) -> None:
        for sub in self._subscribers.values():
            if sub.transport is not None:
                sub.transport.close()
        self._subscribers.clear()
