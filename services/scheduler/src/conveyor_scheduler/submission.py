"""The one submit path: validate TaskSpecs, store them, wake whoever should act on them.

TaskService.Submit and the beat's firings both go through `submit_specs`, so routing,
validation, idempotency keys and dispatcher/promoter wake-ups are the same for both.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from conveyor.v1 import task_pb2
from conveyor_scheduler.store import Submitted
from conveyor_scheduler.validation import NewTask, check_spec

if TYPE_CHECKING:
    from conveyor_scheduler.core import Core


def check_specs(core: Core, specs: Sequence[task_pb2.TaskSpec], at: str = "tasks", *,
                indexed: bool = True) -> list[NewTask]:
    """Validates specs as Submit does; errors name `at[i].field` (or `at.field` unindexed)."""
    cfg, now = core.config, core.store.clock()
    return [check_spec(spec, f"{at}[{i}]" if indexed else at, limits=cfg.limits, router=core.router, now_ms=now,
                       default_timeout_ms=cfg.default_timeout_ms, default_window_ms=cfg.idempotency_window_ms,
                       rate_limits=cfg.task_rate_limits)
            for i, spec in enumerate(specs)]


async def submit_specs(core: Core, specs: Sequence[task_pb2.TaskSpec], at: str = "tasks") -> list[Submitted]:
    """Validates, stores and announces a batch (accepted or rejected whole). Nothing is
    awaited after the store call, so a caller that registers result waiters right after
    it cannot miss a completion.

    Sync match: where a worker on this replica has free credit, the store leases ready-now
    tasks straight to it in the same script (if its queue has nothing ready they would
    overtake), and they are pushed on its stream at once: no wake-up, no claim.
    """
    with core.events.storing(specs) as storing:  # telemetry's enqueue spans and counts, when it is on
        tasks = check_specs(core, specs, at)
        offers = core.dispatcher.offers(tasks)
        try:
            submitted = await core.store.submit(tasks, [m for m, _ in offers.values()], core.scheduler_id)
        except BaseException:
            core.dispatcher.refund(offers)
            raise
        storing.stored(submitted, tasks)
    if offers:
        core.dispatcher.settle(offers, specs, tasks, submitted)
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
        core.wakes.ready(queue)
    for queue, due_ms in due.items():
        core.maintenance.schedule(queue, due_ms)
        core.wakes.publish_soon(queue, due_ms)  # not awaited: Submit(wait_results) relies on that
    return submitted
