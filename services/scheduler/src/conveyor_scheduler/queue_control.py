"""Operator actions on queues and sets of tasks: pause, resume, purge, and cancel or retry
everything a filter matches. Each acts through the queue scripts, in bounded steps, so
Redis keeps serving the hot path while a large action runs."""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass

from conveyor.v1 import task_pb2
from conveyor_scheduler.redis_clients import AsyncRedis
from conveyor_scheduler.store import Store
from conveyor_scheduler.task_search import TaskQuery, TaskSearch

log = logging.getLogger(__name__)

PURGE_CHUNK = 500
"""Tasks one purge.lua call cancels at most: about 3 ms of Redis time (see the note in
docs/ARCHITECTURE.md, "Operations")."""


@dataclass(frozen=True, slots=True)
class BulkOutcome:
    matched: int = 0
    acted: int = 0
    """Tasks ended CANCELLED, or queued again."""
    stopping: int = 0
    """Running tasks asked to stop (cancel only)."""


class QueueControl:
    def __init__(self, store: Store, redis: AsyncRedis, search: TaskSearch, *, on_ready: Callable[[str], None]) -> None:
        self.store = store
        self.redis = redis
        self.search = search
        self.on_ready = on_ready
        """Tasks of the queue are ready: wake dispatch here and on the other replicas."""

    async def pause(self, queue: str) -> bool:
        """Pauses dispatch from `queue`; True if it was paused already."""
        was_set = await self.redis.set(self.store.keys(queue).paused, "1", get=True)
        if was_set is None:
            log.warning("queue %s paused: no task of it is leased until it is resumed", queue)
        return was_set is not None

    async def resume(self, queue: str) -> bool:
        """Resumes dispatch from `queue`; True if it was paused."""
        was_paused = bool(await self.redis.delete(self.store.keys(queue).paused))
        if was_paused:
            log.warning("queue %s resumed", queue)
            self.on_ready(queue)
        return was_paused

    async def purge(self, queue: str) -> int:
        """Cancels every QUEUED and SCHEDULED task of `queue`, PURGE_CHUNK a script call."""
        total = 0
        while True:
            purged, more = await self.store.run("purge", queue, PURGE_CHUNK)  # type: ignore[misc]
            total += int(purged)
            if not more:
                break
        if total:
            log.warning("queue %s purged: %d tasks cancelled", queue, total)
        return total

    async def cancel(self, query: TaskQuery, dry_run: bool) -> BulkOutcome:
        matched = cancelled = stopping = 0
        async for chunk in self.search.walk(query):
            matched += len(chunk)
            if dry_run:
                continue
            for queue, ids in _by_queue(chunk).items():
                # cancel.lua tells result waiters and running tasks' workers (pub/sub)
                for state, _ in await self.store.cancel_many(queue, ids):
                    if state == task_pb2.TASK_STATE_CANCELLED:
                        cancelled += 1
                    elif state == task_pb2.TASK_STATE_ACTIVE:
                        stopping += 1
        return BulkOutcome(matched, cancelled, stopping)

    async def retry(self, query: TaskQuery, dry_run: bool) -> BulkOutcome:
        matched = retried = 0
        async for chunk in self.search.walk(query):
            matched += len(chunk)
            if dry_run:
                continue
            for queue, ids in _by_queue(chunk).items():
                again = int(await self.store.run("retry", queue, *ids))  # type: ignore[call-overload]
                retried += again
                if again:
                    self.on_ready(queue)
        return BulkOutcome(matched, retried)


def _by_queue(chunk: list[tuple[str, str]]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = defaultdict(list)
    for queue, task_id in chunk:
        out[queue].append(task_id)
    return out
