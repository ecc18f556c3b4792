"""Background duties of every replica: promote due scheduled tasks and reap lapsed leases.

Promotion sleeps until the earliest known due time (learned from submits here and on
other replicas, and from Redis after each promotion), so delayed tasks start on time
without a polling loop. Reaping runs every reaper interval. Every replica does both;
the scripts are atomic, so doing them twice is harmless.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from redis.exceptions import RedisError

from conveyor_scheduler.signals import Signal
from conveyor_scheduler.store import Store

log = logging.getLogger(__name__)
RESCAN_MS = 30_000


class Maintenance:
    def __init__(self, store: Store, *, reaper_interval_ms: int,
                 on_ready: Callable[[str], None] = lambda queue: None,
                 on_sweep: Callable[[], Awaitable[None]] | None = None) -> None:
        self.store = store
        self.reaper_interval_ms = reaper_interval_ms
        self.on_ready = on_ready
        """Called with a queue whose tasks it promoted or returned: they are ready."""
        self.on_sweep = on_sweep
        """Awaited every reaper interval: dispatch re-checks every queue (bounds a missed wake)."""
        self._due: dict[str, int] = {}
        self._timer = Signal()
        self._tasks: list[asyncio.Task[None]] = []
        self._rescan: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._promote_loop(), name="promoter"),
                       asyncio.create_task(self._reap_loop(), name="reaper")]

    async def close(self) -> None:
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def schedule(self, queue: str, due_ms: int) -> None:
        """A task of `queue` is due at `due_ms`: make sure the promoter wakes by then."""
        if due_ms < self._due.get(queue, 1 << 62):
            self._due[queue] = due_ms
            self._timer.notify()

    async def rescan(self) -> None:
        for queue in await self.store.queues():
            self._due[queue] = 0
        self._timer.notify()

    def rescan_soon(self) -> None:
        """After an outage (the event bus reconnected) the promoter re-reads every queue's next
        due time, in the background."""
        self._rescan = asyncio.get_running_loop().create_task(self._rescan_after_reconnect())

    async def _rescan_after_reconnect(self) -> None:
        """The periodic rescan covers it if Redis is still away."""
        try:
            await self.rescan()
        except RedisError as exc:
            log.warning("rescan after reconnect failed (%s); the periodic rescan will retry", exc)

    async def _promote_loop(self) -> None:
        next_rescan = 0
        while True:
            seen = self._timer.gen
            try:
                now = self.store.clock()
                if now >= next_rescan:
                    await self.rescan()
                    next_rescan = now + RESCAN_MS
                for queue, due in list(self._due.items()):
                    if due <= now:
                        promoted, nxt = await self.store.promote(queue)
                        if promoted:
                            self.on_ready(queue)
                        if nxt < 0:
                            self._due.pop(queue, None)
                        else:
                            self._due[queue] = nxt
                wake_at = min([*self._due.values(), next_rescan])
            except RedisError as exc:
                log.warning("promoter: %s", exc)
                wake_at = self.store.clock() + 500
            delay = max(0.0, (wake_at - self.store.clock()) / 1000)
            if delay > 0:
                await self._timer.wait_change(seen, delay)

    async def _reap_loop(self) -> None:
        while True:
            try:
                for queue in await self.store.queues():
                    while True:
                        handled, _, more_trim = await self.store.reap(queue)
                        if handled:
                            self.on_ready(queue)
                            self.schedule(queue, self.store.clock())
                        if handled < 500 and not more_trim:
                            break
                if self.on_sweep is not None:
                    await self.on_sweep()
            except RedisError as exc:
                log.warning("reaper: %s", exc)
            await asyncio.sleep(self.reaper_interval_ms / 1000)
