"""The scheduler core: the one place where a replica's objects are built and wired together
(store, submission, dispatch, completion, wake-ups, waiters, pub/sub, maintenance, the beat and
the task-event hooks). Each gets its collaborators here, by injection, so none needs the Core:
only server.py imports it, to start and stop it and to hand the servicers the objects they call.
"""

from __future__ import annotations

import asyncio
import os
import socket

from conveyor_scheduler.beat import Beat
from conveyor_scheduler.bus import EventBus
from conveyor_scheduler.cancels import Cancels
from conveyor_scheduler.completion import Completion
from conveyor_scheduler.config import SchedulerConfig
from conveyor_scheduler.control import WorkerControl
from conveyor_scheduler.dispatch import Dispatcher
from conveyor_scheduler.maintenance import Maintenance
from conveyor_scheduler.queue_control import QueueControl
from conveyor_scheduler.queue_stats import QueueStatsReader
from conveyor_scheduler.redis_clients import AsyncRedis, fast_client
from conveyor_scheduler.registry import WorkerRegistry
from conveyor_scheduler.routing import Router
from conveyor_scheduler.store import Store, wall_clock_ms
from conveyor_scheduler.submission import Submission
from conveyor_scheduler.task_events import TaskEventHooks
from conveyor_scheduler.task_lookup import TaskLookup
from conveyor_scheduler.task_search import TaskSearch
from conveyor_scheduler.waiters import ResultWaiters
from conveyor_scheduler.wakes import Wakes
from conveyor_scheduler.watchers import Watchers
from conveyor_scheduler.workflow_payloads import MAX_NODE_PAYLOAD
from conveyor_scheduler.workflow_store import WorkflowStore
from conveyor_scheduler.workflows import Workflows


class Core:
    def __init__(self, config: SchedulerConfig, redis: AsyncRedis, clock=wall_clock_ms) -> None:
        self.config = config
        self.scheduler_id = config.scheduler_id or f"{socket.gethostname()}-{os.getpid()}"
        self.redis = redis
        self.router = Router(config.routes)
        self.fast_redis = (fast_client(config.redis_url, wait_timeout_ms=config.redis_wait_timeout_ms)
                           if config.redis_client == "hiredis" else None)
        self.store = Store(redis, result_ttl_ms=config.result_ttl_ms,
                           default_timeout_ms=config.default_timeout_ms, clock=clock, fast=self.fast_redis,
                           wait_replicas=config.redis_wait_replicas)
        self.lookup = TaskLookup(self.store)
        self.events = TaskEventHooks()  # telemetry adds itself at setup
        self.dispatcher = Dispatcher(self.store, lease_ttl_ms=config.lease_ttl_ms, batch=config.dispatch_batch,
                                     events=self.events, queue_rates=config.queue_rate_limits)
        self.registry = WorkerRegistry(redis, scheduler_id=self.scheduler_id, lease_ttl_ms=config.lease_ttl_ms,
                                       clock=clock, fast=self.fast_redis)
        self.control = WorkerControl(redis, self.dispatcher.session)
        self.queue_stats = QueueStatsReader(self.store, self.registry)
        self.task_search = TaskSearch(self.store)
        self.waiters = ResultWaiters()
        self.watchers = Watchers()
        self.maintenance = Maintenance(self.store, reaper_interval_ms=config.reaper_interval_ms,
                                       on_sweep=self.dispatcher.sweep)
        self.bus = EventBus(redis, origin=self.scheduler_id, fast=self.fast_redis,
                            on_done=self.waiters.notify, on_state=self.watchers.on_message,
                            on_cancel=self.dispatcher.cancel, on_reconnect=self._on_reconnect,
                            on_control=self.control.on_message)
        # On a Redis Cluster a queue met (a submit, a task looked up) or served is a queue heard.
        self.store.on_queue = self.dispatcher.on_serving = self.bus.follow
        self.wakes = Wakes(self.dispatcher, self.maintenance, self.bus)
        # Wake-ups run both ways: the promoter, the bus and dispatch call back into them.
        self.maintenance.on_ready = self.wakes.ready_everywhere
        self.bus.on_wake = self.wakes.heard
        self.dispatcher.on_reserved = self.maintenance.schedule  # rate-limited tasks wait for a slot
        self.dispatcher.on_parked = self.wakes.parked
        self.queue_control = QueueControl(self.store, redis, self.task_search, on_ready=self.wakes.ready_everywhere)
        self.completion = Completion(self.store, self.lookup, self.waiters, self.maintenance, self.events,
                                     config.limits)
        self.submission = Submission(config, self.router, self.store, self.dispatcher, self.maintenance, self.wakes,
                                     self.events, self.scheduler_id)
        self.cancels = Cancels(self.lookup, self.store, self.waiters)
        self.workflows = Workflows(
            WorkflowStore(redis, result_ttl_ms=config.result_ttl_ms, clock=self.store.clock),
            check_task=lambda spec, at: self.submission.check_specs([spec], at, indexed=False)[0],
            submit_nodes=lambda nodes: self.submission.submit_specs(
                [s for s, _ in nodes], "workflow.nodes", [f for _, f in nodes], payload_limit=MAX_NODE_PAYLOAD),
            cancel_tasks=self.cancels.cancel, task_states=self.lookup.states, consumer=self.scheduler_id)
        self.bus.on_outbox = self.workflows.outbox_written
        self.bus.on_workflow = self.workflows.changed
        self.beat = Beat(redis, self.submission, clock=self.store.clock, scheduler_id=self.scheduler_id,
                         lease_ms=config.beat_lease_ms, grace_ms=config.beat_misfire_grace_ms)

    async def start(self) -> None:
        await self.redis.ping()
        self.bus.start()
        self.maintenance.start()
        await asyncio.wait_for(self.bus.ready.wait(), 10)
        await self.beat.start()
        self.workflows.start()

    async def close(self) -> None:
        await self.beat.close()  # first: a graceful stop hands the beat lease over at once
        await self.workflows.close()
        await self.dispatcher.close()
        await self.maintenance.close()
        await self.bus.close()
        await self.store.aclose()

    def _on_reconnect(self) -> None:
        """The event bus is back after an outage: whatever it missed, everyone re-reads Redis."""
        self.waiters.notify_all()
        self.watchers.resync_all()
        self.dispatcher.wake_all()
        self.maintenance.rescan_soon()
        self.workflows.drain_all_soon()
        self.workflows.changed_all()
