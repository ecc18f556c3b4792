"""A task from its id: the queue the id names (ids carry their queue's number, which the
store maps back to its name) and the task's record. Every call that names a task by id
starts here, so a malformed id or an unknown queue gets the same answer everywhere."""

from __future__ import annotations

from collections.abc import Sequence

from conveyor_scheduler.errors import NotFound
from conveyor_scheduler.store import Record, Store
from conveyor_scheduler.validation import check_task_id


class TaskLookup:
    def __init__(self, store: Store) -> None:
        self.store = store

    async def queue_of(self, task_id: str, field: str = "task_id") -> str:
        """The queue a task id belongs to (INVALID_ARGUMENT / NOT_FOUND otherwise)."""
        return await self.store.queue_name(check_task_id(task_id, field))

    async def record(self, task_id: str) -> tuple[str, Record]:
        """The task's queue and record (NOT_FOUND when it does not exist, or no longer)."""
        queue = await self.queue_of(task_id)
        rec = await self.store.get(queue, task_id)
        if not rec:
            raise NotFound(f"no task {task_id} (it never existed, or its record expired)")
        return queue, rec

    async def states(self, task_ids: Sequence[str]) -> list[int]:
        """The states of tasks, in order, read in one round trip (0 for one whose record is gone)."""
        return await self.store.states([(await self.queue_of(task_id), task_id) for task_id in task_ids])
