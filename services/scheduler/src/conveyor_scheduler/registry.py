"""The worker registry in Redis: one entry per connected worker, kept by the replica holding
its stream, so every replica lists the same fleet (AdminService.ListWorkers).

An entry is a hash (WORKER_FIELDS in keys.py) with the lease TTL as its own TTL, refreshed by
each heartbeat, plus an index scored by lapse time: a worker that vanishes with its replica
still drops out within the TTL. Only the stream that registered an entry (field o) refreshes
or removes it, so a worker that reconnected elsewhere is never removed by its old stream.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from google.protobuf.timestamp_pb2 import Timestamp
from redis.commands.core import AsyncScript

from conveyor.v1 import admin_service_pb2
from conveyor_scheduler.fast_cluster import FastCluster
from conveyor_scheduler.fast_redis import FastRedis, Script
from conveyor_scheduler.keys import WORKERS_INDEX, worker_key
from conveyor_scheduler.redis_clients import AsyncRedis
from conveyor_scheduler.sessions import WorkerSession
from conveyor_scheduler.store import Record, script_text, wall_clock_ms

MAX_LISTED = 10_000


@dataclass(frozen=True, slots=True)
class Registered:
    """A registry entry: what AdminService shows, and the stream that owns it."""

    worker: admin_service_pb2.Worker
    owner: str


class WorkerRegistry:
    SCRIPTS = ("worker_join", "worker_beat", "worker_leave")

    def __init__(self, redis: AsyncRedis, *, scheduler_id: str, lease_ttl_ms: int,
                 clock: Callable[[], int] = wall_clock_ms, fast: FastRedis | FastCluster | None = None) -> None:
        self.redis = redis
        self.scheduler_id = scheduler_id
        self.ttl_ms = lease_ttl_ms
        self.clock = clock
        # On the hot path's pipelined connection when there is one, like the queue scripts: a
        # burst of heartbeats (hundreds of streams at once) must not need a pooled connection each.
        self._scripts: dict[str, AsyncScript | Script] = {
            name: Script(fast, script_text(name)) if fast else redis.register_script(script_text(name))
            for name in self.SCRIPTS
        }

    async def join(self, session: WorkerSession) -> None:
        """Registers a stream's worker, replacing the entry of any earlier stream."""
        now = self.clock()
        fields: list[str | int] = [
            "h", session.hostname, "pid", session.pid, "sdk", session.sdk, "q", ",".join(session.queues),
            "n", ",".join(session.task_names), "pf", session.prefetch, "r", self.scheduler_id,
            "o", session.owner, "ca", session.connected_ms, "hb", now, *self._state(session)]
        if session.started_ms:
            fields += ["sa", session.started_ms]
        await self._scripts["worker_join"](keys=self._keys(session.worker_id),
                                           args=[session.worker_id, self.ttl_ms, now, *fields])

    async def beat(self, session: WorkerSession) -> None:
        """Refreshes the entry with the session's state (a heartbeat, a drain); registers it
        again if it lapsed meanwhile (e.g. Redis was away longer than the TTL)."""
        now = self.clock()
        found = await self._scripts["worker_beat"](
            keys=self._keys(session.worker_id),
            args=[session.worker_id, session.owner, self.ttl_ms, now, "hb", now, *self._state(session)])
        if int(found) < 0:
            await self.join(session)

    async def leave(self, session: WorkerSession) -> bool:
        """Removes the entry if this stream still owns it."""
        return bool(await self._scripts["worker_leave"](keys=self._keys(session.worker_id),
                                                        args=[session.worker_id, session.owner]))

    async def get(self, worker_id: str) -> Registered | None:
        rec = await self.redis.hgetall(worker_key(worker_id))
        return _registered(worker_id, rec) if rec else None

    async def list(self, queue: str = "") -> list[admin_service_pb2.Worker]:
        """Every live entry (lapsed ids are pruned from the index), by worker id; `queue`
        keeps the workers consuming it."""
        await self.redis.zremrangebyscore(WORKERS_INDEX, "-inf", self.clock())
        ids = sorted(i.decode() for i in await self.redis.zrange(WORKERS_INDEX, 0, MAX_LISTED - 1))
        pipe = self.redis.pipeline(transaction=False)
        for worker_id in ids:
            pipe.hgetall(worker_key(worker_id))
        records = await pipe.execute() if ids else []
        found = [_registered(i, rec).worker for i, rec in zip(ids, records, strict=True) if rec]
        return [w for w in found if not queue or queue in w.queues]

    @staticmethod
    def _state(session: WorkerSession) -> list[str | int]:
        return ["c", session.concurrency, "dr", int(session.draining), "ok", session.succeeded,
                "ko", session.failed, "at", ",".join(session.active_task_ids)]

    @staticmethod
    def _keys(worker_id: str) -> tuple[str, str]:
        return worker_key(worker_id), WORKERS_INDEX


def _registered(worker_id: str, rec: Record) -> Registered:
    def text(name: bytes) -> str:
        return rec.get(name, b"").decode()

    def number(name: bytes) -> int:
        return int(rec.get(name) or 0)

    def split(name: bytes) -> list[str]:
        return [v for v in text(name).split(",") if v]

    worker = admin_service_pb2.Worker(
        worker_id=worker_id, hostname=text(b"h"), pid=number(b"pid"), sdk=text(b"sdk"), queues=split(b"q"),
        task_names=split(b"n"), concurrency=number(b"c"), prefetch=number(b"pf"), active_task_ids=split(b"at"),
        succeeded=number(b"ok"), failed=number(b"ko"), scheduler_id=text(b"r"), draining=text(b"dr") == "1",
        connected_at=_timestamp(number(b"ca")), last_heartbeat=_timestamp(number(b"hb")),
        expires_at=_timestamp(number(b"ex")))
    if b"sa" in rec:
        worker.started_at.CopyFrom(_timestamp(number(b"sa")))
    return Registered(worker, text(b"o"))


def _timestamp(ms: int) -> Timestamp:
    ts = Timestamp()
    ts.FromMilliseconds(ms)
    return ts
