"""The scheduler core: one object per replica tying the store, dispatch, waiters,
pub/sub and maintenance together. The gRPC servicers are thin layers over it."""

from __future__ import annotations

import asyncio
import logging
import os
import socket

from redis.asyncio import Redis
from redis.exceptions import RedisError

from conveyor_scheduler.background import Background
from conveyor_scheduler.beat import Beat
from conveyor_scheduler.bus import EventBus
from conveyor_scheduler.completion import Completion
from conveyor_scheduler.config import SchedulerConfig
from conveyor_scheduler.control import WorkerControl
from conveyor_scheduler.dispatch import Dispatcher
from conveyor_scheduler.fast_redis import FastRedis
from conveyor_scheduler.maintenance import Maintenance
from conveyor_scheduler.queue_control import QueueControl
from conveyor_scheduler.queue_stats import QueueStatsReader
from conveyor_scheduler.registry import WorkerRegistry
from conveyor_scheduler.routing import Router
from conveyor_scheduler.store import Store, wall_clock_ms
from conveyor_scheduler.task_events import TaskEventHooks
from conveyor_scheduler.task_lookup import TaskLookup
from conveyor_scheduler.task_search import TaskSearch
from conveyor_scheduler.waiters import ResultWaiters
from conveyor_scheduler.watchers import Watchers

log = logging.getLogger(__name__)


class Core:
    def __init__(self, config: SchedulerConfig, redis: Redis, clock=wall_clock_ms) -> None:
        self.config = config
        self.scheduler_id = config.scheduler_id or f"{socket.gethostname()}-{os.getpid()}"
        self.redis = redis
        self.router = Router(config.routes)
        self.fast_redis = FastRedis(config.redis_url) if FastRedis.supports(config.redis_url) else None
        self.store = Store(redis, result_ttl_ms=config.result_ttl_ms,
                           default_timeout_ms=config.default_timeout_ms, clock=clock, fast=self.fast_redis)
        self.lookup = TaskLookup(self.store)
        self.events = TaskEventHooks()  # telemetry adds itself at setup
        self.dispatcher = Dispatcher(self.store, lease_ttl_ms=config.lease_ttl_ms, batch=config.dispatch_batch,
                                     events=self.events, queue_rates=config.queue_rate_limits)
        self.registry = WorkerRegistry(redis, scheduler_id=self.scheduler_id, lease_ttl_ms=config.lease_ttl_ms,
                                       clock=clock, fast=self.fast_redis)
        self.control = WorkerControl(redis, self.dispatcher.session)
        self.queue_stats = QueueStatsReader(self.store, self.registry)
        self.task_search = TaskSearch(self.store)
        self.queue_control = QueueControl(self.store, redis, self.task_search, on_ready=self._ready_everywhere)
        self.waiters = ResultWaiters()
        self.watchers = Watchers()
        self.maintenance = Maintenance(self.store, reaper_interval_ms=config.reaper_interval_ms,
                                       on_ready=self._ready_everywhere, on_sweep=self.dispatcher.sweep)
        self.completion = Completion(self.store, self.lookup, self.waiters, self.maintenance, self.events,
                                     config.limits)
        self.dispatcher.on_reserved = self.maintenance.schedule  # rate-limited tasks wait for a slot
        self.dispatcher.on_parked = self._parked
        self.bus = EventBus(redis, origin=self.scheduler_id, fast=self.fast_redis,
                            on_done=self.waiters.notify, on_wake=self._on_wake,
                            on_state=self.watchers.on_message, on_cancel=self.dispatcher.cancel,
                            on_reconnect=self._on_reconnect, on_control=self.control.on_message)
        self.beat = Beat(self)
        self._background = Background()
        self._parked_logged: set[tuple[str, str]] = set()

    async def start(self) -> None:
        await self.redis.ping()
        self.bus.start()
        self.maintenance.start()
        await asyncio.wait_for(self.bus.ready.wait(), 10)
        await self.beat.start()

    async def close(self) -> None:
        await self.beat.close()  # first: a graceful stop hands the beat lease over at once
        await self.dispatcher.close()
        await self.maintenance.close()
        await self.bus.close()
        await self.store.aclose()

    def tasks_ready(self, queue: str) -> None:
        self.dispatcher.wake(queue)

    def _ready_everywhere(self, queue: str) -> None:
        """Tasks of `queue` are ready (promoted, reaped, resumed, retried): wake dispatch here and on
        the other replicas."""
        self.dispatcher.wake(queue)
        self.publish_wake_soon(queue)

    def publish_wake_soon(self, queue: str, due_ms: int = 0) -> None:
        """Tells the other replicas about `queue` without making the caller wait for Redis."""
        async def publish() -> None:
            try:
                await self.bus.publish_wake(queue, due_ms)
            except (RedisError, OSError) as exc:  # their periodic sweep and rescan cover it
                log.info("could not tell the other replicas about queue %s: %s", queue, exc)

        self._background.spawn(publish())

    def _parked(self, queue: str, names: list[str]) -> None:
        """A claim parked tasks its worker does not run: say so once per name, and let the other
        replicas' workers look (one of them may declare the name)."""
        for name in names:
            if (queue, name) not in self._parked_logged and len(self._parked_logged) < 10_000:
                self._parked_logged.add((queue, name))
                log.warning("queue %s: tasks named %s wait: the workers taking from it do not declare that name",
                            queue, name)
        self.publish_wake_soon(queue)

    def _on_wake(self, queue: str, due_ms: int) -> None:
        if due_ms:
            self.maintenance.schedule(queue, due_ms)
        else:
            self.dispatcher.wake(queue)

    def _on_reconnect(self) -> None:
        self.waiters.notify_all()
        self.watchers.resync_all()
        self.dispatcher.wake_all()
        self._rescan = asyncio.get_running_loop().create_task(self._rescan_after_reconnect())

    async def _rescan_after_reconnect(self) -> None:
        """After an outage the promoter re-reads every queue's next due time (the periodic
        rescan covers it if Redis is still away)."""
        try:
            await self.maintenance.rescan()
        except RedisError as exc:
            log.warning("rescan after reconnect failed (%s); the periodic rescan will retry", exc)
