"""The one submit path: validate TaskSpecs, store them, wake whoever should act on them.

TaskService.Submit and the beat's firings both go through `Submission.submit_specs`, so
routing, validation, idempotency keys and dispatcher/promoter wake-ups are the same for both.
The twin of completion.py: this is how tasks come in, that is how they end.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from conveyor.v1 import task_pb2
from conveyor_scheduler.coalescing import Coalescer
from conveyor_scheduler.config import SchedulerConfig
from conveyor_scheduler.dispatch import Dispatcher
from conveyor_scheduler.maintenance import Maintenance
from conveyor_scheduler.routing import Router
from conveyor_scheduler.store import Store, Submitted
from conveyor_scheduler.task_events import TaskEvents
from conveyor_scheduler.validation import NewTask, check_spec
from conveyor_scheduler.wakes import Wakes

MAX_BATCH_ITEMS = 1000
"""Tasks merged into one store call; a larger Submit runs alone (a script call stays short)."""


class Submission:
    def __init__(self, config: SchedulerConfig, router: Router, store: Store, dispatcher: Dispatcher,
                 maintenance: Maintenance, wakes: Wakes, events: TaskEvents, scheduler_id: str) -> None:
        self.config = config
        """Limits and defaults (timeouts, idempotency window, task rate limits)."""
        self.router = router
        self.store = store
        self.dispatcher = dispatcher
        """Offers this replica's workers for the sync match, and settles what the store leased them."""
        self.maintenance = maintenance
        """The promoter, told when a delayed task is due."""
        self.wakes = wakes
        self.events = events
        self.scheduler_id = scheduler_id
        """The origin of submit.lua's wake publish (this replica does not act on it twice)."""
        self.batches: Coalescer[tuple[task_pb2.TaskSpec, NewTask], Submitted] = Coalescer(self._store,
                                                                                        MAX_BATCH_ITEMS)
        """Submits arriving while one is stored share the next store call (coalescing.py).

        Why no completion is missed: a batch's callers are resumed by the store reply's own
        callback chain, before any I/O that follows it is read (asyncio runs ready callbacks
        first in, first out), and a task cannot finish before its submit's reply has arrived."""

    def check_specs(self, specs: Sequence[task_pb2.TaskSpec], at: str = "tasks", *,
                    indexed: bool = True, max_payload_bytes: int | None = None) -> list[NewTask]:
        """Validates specs as Submit does; errors name `at[i].field` (or `at.field` unindexed).
        `max_payload_bytes` replaces the configured payload limit (a workflow node's payload
        with its parents' results in it has a limit of its own)."""
        cfg, now = self.config, self.store.clock()
        limits = cfg.limits if max_payload_bytes is None else replace(cfg.limits, max_payload_bytes=max_payload_bytes)
        return [check_spec(spec, f"{at}[{i}]" if indexed else at, limits=limits, router=self.router, now_ms=now,
                           default_timeout_ms=cfg.default_timeout_ms, default_window_ms=cfg.idempotency_window_ms,
                           rate_limits=cfg.task_rate_limits)
                for i, spec in enumerate(specs)]

    async def submit_specs(self, specs: Sequence[task_pb2.TaskSpec], at: str = "tasks",
                           extra_fields: Sequence[list[str | bytes | int]] = (), *,
                           max_payload_bytes: int | None = None) -> list[Submitted]:
        """Validates, stores and announces a batch (accepted or rejected whole). Nothing that
        could let a completion through is awaited after the store call (see `batches`), so a
        caller that registers result waiters right after it cannot miss a completion.
        `extra_fields[i]` is added to task i's hash (a workflow's node says which it is);
        `max_payload_bytes`: see check_specs."""
        with self.events.storing(specs) as storing:  # telemetry's enqueue spans and counts, when it is on
            tasks = self.check_specs(specs, at, max_payload_bytes=max_payload_bytes)
            for task, fields in zip(tasks, extra_fields, strict=False):
                task.fields.extend(fields)
            submitted = await self.batches(list(zip(specs, tasks, strict=True)))
            storing.stored(submitted, tasks)
        return submitted

    async def _store(self, items: list[tuple[task_pb2.TaskSpec, NewTask]]) -> list[Submitted]:
        """Stores the submits of one batch (`batches`): one script call per queue for all of them.

        Sync match: where a worker on this replica has free credit, the store leases ready-now
        tasks straight to it in the same script (if its queue has nothing ready they would
        overtake), and they are pushed on its stream at once: no wake-up, no claim.
        """
        specs, tasks = [spec for spec, _ in items], [task for _, task in items]
        offers = self.dispatcher.offers(tasks)
        try:
            submitted = await self.store.submit(tasks, [m for m, _ in offers.values()], self.scheduler_id)
        except BaseException:
            self.dispatcher.refund(offers)
            raise
        if offers:
            self.dispatcher.settle(offers, specs, tasks, submitted)
        ready: set[str] = set()
        due: dict[str, int] = {}
        for task, sub in zip(tasks, submitted, strict=True):
            if sub.duplicate:
                continue
            if sub.state == task_pb2.TASK_STATE_QUEUED:
                ready.add(sub.queue)
            elif sub.state == task_pb2.TASK_STATE_SCHEDULED:
                due[sub.queue] = min(due.get(sub.queue, task.due_ms), task.due_ms)
        for queue in ready:  # other replicas heard of it from submit.lua's wake publish
            self.wakes.ready(queue)
        for queue, due_ms in due.items():
            self.maintenance.schedule(queue, due_ms)
            self.wakes.publish_soon(queue, due_ms)  # not awaited: Submit(wait_results) relies on that
        return submitted
