"""Cancelling tasks by id, for callers that cancel many at once (a workflow's cancel or fail
fast): grouped by queue, one cancel.lua call each, and result waiters woken as Cancel does."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from conveyor.v1 import task_pb2
from conveyor_scheduler.store import Store
from conveyor_scheduler.task_lookup import TaskLookup
from conveyor_scheduler.waiters import ResultWaiters

CHUNK = 500
"""Tasks per cancel.lua call: a 10,000-node workflow's cancel never holds Redis for long."""


class Cancels:
    def __init__(self, lookup: TaskLookup, store: Store, waiters: ResultWaiters) -> None:
        self.lookup = lookup
        self.store = store
        self.waiters = waiters

    async def cancel(self, task_ids: Sequence[str]) -> None:
        """Cancels each task not finished yet (a running one is asked to stop; a finished one is left)."""
        by_queue: dict[str, list[str]] = defaultdict(list)
        for task_id in task_ids:
            by_queue[await self.lookup.queue_of(task_id)].append(task_id)
        for queue, ids in by_queue.items():
            for start in range(0, len(ids), CHUNK):
                chunk = ids[start:start + CHUNK]
                for task_id, (state, _) in zip(chunk, await self.store.cancel_many(queue, chunk), strict=True):
                    if state == task_pb2.TASK_STATE_CANCELLED:
                        self.waiters.notify(task_id)
