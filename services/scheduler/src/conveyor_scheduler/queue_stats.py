"""ListQueues: each queue's depth (queue_stats.lua) and recent activity (the 10-second
buckets that every queue script adds to, lib.lua's epilogue), read from Redis so any
replica gives the same answer.
"""

from __future__ import annotations

import asyncio
import math
import struct
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from conveyor.v1 import admin_service_pb2 as pb
from conveyor_scheduler.keys import (
    CHANNEL_PREFIX,
    HIST_BUCKETS,
    PRIORITY_LEVELS,
    REGISTRY_KEYS,
    RUN_SLOT,
    STAT_BUCKET_MS,
    STAT_COUNTERS,
    STAT_RETENTION_MS,
    WAIT_SLOT,
    QueueKeys,
)
from conveyor_scheduler.records import set_duration_ms
from conveyor_scheduler.redis_clients import SyncRedis, pipelined_sync
from conveyor_scheduler.registry import WorkerRegistry
from conveyor_scheduler.store import Store, script_text

WINDOWS_MINUTES = (1, 5, 15)
BUCKETS_PER_MINUTE = 60_000 // STAT_BUCKET_MS
HISTORY_MINUTES = 60
"""GetQueueHistory's reach: the buckets live STAT_RETENTION_MS, a little over an hour."""
assert (HISTORY_MINUTES * BUCKETS_PER_MINUTE + 1) * STAT_BUCKET_MS <= STAT_RETENTION_MS


def bucket_ms(k: int) -> float:
    """The value reported for histogram bucket k (lib.lua's stat_ms): the geometric middle
    of [2^((k-1)/4), 2^(k/4)) ms; bucket 0 (under 1 ms) reports 0.5 ms."""
    return 0.5 if k <= 0 else 2 ** ((k - 0.5) / 4)


def percentile_ms(hist: Mapping[int, int], q: float) -> float | None:
    """The q-quantile (0 < q <= 1) of a histogram {bucket: count}, or None when it is empty."""
    total = sum(hist.values())
    if total == 0:
        return None
    rank = math.ceil(q * total)
    seen = 0
    for k in sorted(hist):
        seen += hist[k]
        if seen >= rank:
            return bucket_ms(k)
    return bucket_ms(max(hist))  # unreachable: seen reaches total


Counts = tuple[int, ...]
"""One bucket's counters as `counters` reads them, or several buckets added up."""


ZEROS: Counts = (0,) * (RUN_SLOT + HIST_BUCKETS)
"""A missing bucket's counters: `added` skips it, as most of an idle queue's hour is missing."""


def counters(raw: bytes | None) -> Counts:
    """An activity bucket's u32 big-endian counters (a missing or short string reads as zeros)."""
    if not raw:
        return ZEROS
    slots = RUN_SLOT + HIST_BUCKETS
    raw = raw[:4 * slots]
    return struct.unpack(f">{slots}I", raw + bytes(4 * slots - len(raw)))


def added(buckets: Sequence[Counts]) -> Counts:
    """Buckets added up slot by slot (all zeros for none)."""
    present = [b for b in buckets if b is not ZEROS]
    if len(present) <= 1:
        return present[0] if present else ZEROS
    return tuple(sum(column) for column in zip(*present, strict=True))


def summary(total: Counts, minutes: int, covered_ms: int, start_ms: int) -> pb.QueueWindow:
    """A QueueWindow of added-up counters: the counts, and percentiles from the histograms."""
    wait: Counter[int] = Counter({k: c for k in range(HIST_BUCKETS) if (c := total[WAIT_SLOT + k])})
    run: Counter[int] = Counter({k: c for k in range(HIST_BUCKETS) if (c := total[RUN_SLOT + k])})
    out = pb.QueueWindow(minutes=minutes, **{name: total[slot] for slot, name in enumerate(STAT_COUNTERS)})
    set_duration_ms(out.covered, covered_ms)
    out.start.FromMilliseconds(start_ms)
    for hist, p50, p95 in ((wait, out.wait_p50, out.wait_p95), (run, out.run_p50, out.run_p95)):
        for q, target in ((0.5, p50), (0.95, p95)):
            ms = percentile_ms(hist, q)
            if ms is not None:
                target.FromNanoseconds(round(ms * 1_000_000))
    return out


def window(buckets: Sequence[Counts], minutes: int, now_ms: int) -> pb.QueueWindow:
    """Adds up the newest `minutes` * 6 buckets (buckets[0] is the current one)."""
    n = minutes * BUCKETS_PER_MINUTE
    newest = now_ms // STAT_BUCKET_MS
    return summary(added(buckets[:n]), minutes, (n - 1) * STAT_BUCKET_MS + now_ms % STAT_BUCKET_MS,
                   (newest - n + 1) * STAT_BUCKET_MS)


def by_minute(buckets: Sequence[Counts]) -> list[Counts]:
    """Buckets in wall-clock order (from `history_buckets`) added up per minute."""
    return [added(buckets[i:i + BUCKETS_PER_MINUTE]) for i in range(0, len(buckets), BUCKETS_PER_MINUTE)]


def minute_points(minutes: Sequence[Counts], now_ms: int) -> list[pb.QueueWindow]:
    """One window per wall-clock minute (`by_minute`'s), oldest first, the last being the
    current minute so far."""
    first = now_ms // 60_000 - len(minutes) + 1
    return [summary(total, 1, min(60_000, now_ms - (first + i) * 60_000), (first + i) * 60_000)
            for i, total in enumerate(minutes)]


def history_buckets(minutes: int, now_ms: int) -> range:
    """The bucket numbers the last `minutes` wall-clock minutes span, oldest first (the current
    minute's future buckets included: they read as zeros)."""
    first = (now_ms // 60_000 - minutes + 1) * BUCKETS_PER_MINUTE
    return range(first, first + minutes * BUCKETS_PER_MINUTE)


@dataclass(frozen=True, slots=True)
class Depth:
    """A queue's depth, from one queue_stats.lua reply: the one reading of it that ListQueues,
    the Prometheus fleet gauges and the OpenTelemetry depth gauge share."""

    by_priority: tuple[int, ...]
    """Queued tasks per priority 0-9: ready-list entries less tombstones, plus parked tasks."""
    scheduled: int
    active: int
    dead: int
    paused: bool
    oldest_ready_ms: int | None
    """When the longest-waiting queued task became ready (None: none queued)."""
    parked_names: tuple[str, ...]

    @property
    def queued(self) -> int:
        return sum(self.by_priority)

    @classmethod
    def from_reply(cls, reply: Sequence[object]) -> Depth:
        lengths, tombs, parked, scheduled, active, dead, paused, oldest, names = reply  # type: ignore[misc]
        by_priority = tuple(max(0, int(lengths[p]) - int(tombs[p])) + int(parked[p]) for p in range(PRIORITY_LEVELS))
        return cls(by_priority, int(scheduled), int(active), int(dead), paused == 1,  # type: ignore[arg-type]
                   int(oldest) if int(oldest) >= 0 and any(by_priority) else None,  # type: ignore[arg-type]
                   tuple(n.decode() for n in names))  # type: ignore[union-attr]


class QueueStatsReader:
    def __init__(self, store: Store, registry: WorkerRegistry) -> None:
        self.store = store
        self.registry = registry

    async def list(self, queues: Sequence[str]) -> list[pb.QueueStats]:
        workers = await self.registry.list()
        return list(await asyncio.gather(*(self._one(queue, workers) for queue in queues)))

    async def _one(self, queue: str, workers: Sequence[pb.Worker]) -> pb.QueueStats:
        now = self.store.clock()
        depth = Depth.from_reply(await self.store.run("queue_stats", queue))  # type: ignore[arg-type]
        newest = now // STAT_BUCKET_MS
        raw = await self.store.strings([self.store.keys(queue).stats(newest - i)
                                        for i in range(max(WINDOWS_MINUTES) * BUCKETS_PER_MINUTE)])
        buckets = [counters(r) for r in raw]
        stats = pb.QueueStats(queue=queue, queued_by_priority=depth.by_priority, queued=depth.queued,
                              scheduled=depth.scheduled, active=depth.active, dead=depth.dead, paused=depth.paused,
                              unserved_names=unserved(depth.parked_names, queue, workers),
                              windows=[window(buckets, m, now) for m in WINDOWS_MINUTES])
        if depth.oldest_ready_ms is not None:
            set_duration_ms(stats.oldest_queued_age, max(0, now - depth.oldest_ready_ms))
        return stats


    async def history(self, queues: Sequence[str], minutes: int) -> pb.GetQueueHistoryResponse:
        """Each queue's last `minutes` minutes, minute by minute, and their sum."""
        now = self.store.clock()
        numbers = history_buckets(minutes, now)
        out = pb.GetQueueHistoryResponse()
        fleet = [ZEROS] * minutes
        raws = await asyncio.gather(*(self.store.strings([self.store.keys(q).stats(b) for b in numbers])
                                      for q in queues))
        for queue, raw in zip(queues, raws, strict=True):
            per_minute = by_minute([counters(r) for r in raw])
            out.queues.add(queue=queue, points=minute_points(per_minute, now))
            fleet = [added(pair) for pair in zip(fleet, per_minute, strict=True)]
        out.total.points.extend(minute_points(fleet, now))
        return out


class SyncQueueReader:
    """The same readings for the metrics threads (Prometheus scrapes, OTel collection), which
    cannot use the event loop's clients: one synchronous client, pipelined per scrape."""

    def __init__(self, client: SyncRedis) -> None:
        self.client = client
        self._stats = client.register_script(script_text("queue_stats"))

    def queues(self, limit: int) -> tuple[list[str], int]:
        """Up to `limit` queue names, sorted, and how many the registry holds."""
        names: list[str] = []
        for name, _ in self.client.hscan_iter(REGISTRY_KEYS[0], count=limit):
            names.append(name.decode() if isinstance(name, bytes) else str(name))
            if len(names) >= limit:
                break
        return sorted(names), int(self.client.hlen(REGISTRY_KEYS[0]))

    def read(self, queues: Sequence[str], now_ms: int, minutes: int = 0
             ) -> list[tuple[Depth, pb.QueueWindow | None]]:
        """Each queue's depth and, with `minutes`, its activity window."""
        newest = now_ms // STAT_BUCKET_MS
        calls = []
        for queue in queues:
            keys = QueueKeys.of(queue)
            calls.append((keys.script_keys, [keys.prefix, now_ms, 0, CHANNEL_PREFIX]))

        def buckets(pipe: Any, index: int) -> None:
            if minutes:
                keys = QueueKeys.of(queues[index])
                # MGET by name: redis-py's cluster pipeline refuses its mget(), though these keys
                # share the queue's slot
                pipe.execute_command("MGET", *(keys.stats(newest - i) for i in range(minutes * BUCKETS_PER_MINUTE)))

        replies = iter(pipelined_sync(self.client, self._stats, calls, buckets))
        out: list[tuple[Depth, pb.QueueWindow | None]] = []
        for _ in queues:
            depth = Depth.from_reply(next(replies))
            activity = window([counters(r) for r in next(replies)], minutes, now_ms) if minutes else None
            out.append((depth, activity))
        return out


def unserved(parked: Sequence[str], queue: str, workers: Sequence[pb.Worker]) -> list[str]:
    """The parked names that no registered worker consuming `queue` can run (one that declares
    no names runs any)."""
    declared: set[str] = set()
    for w in workers:
        if queue in w.queues:
            if not w.task_names:
                return []
            declared.update(w.task_names)
    return sorted(n for n in parked if n not in declared)
