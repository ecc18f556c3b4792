"""Result waiters: GetResult(wait), GetResults(wait) and Submit(wait_results) sleep until
a completion wakes them (all through `wait_many`).

Completions arrive in-process (an ack handled by this replica, which hands over the
finished record so the waiter answers without reading Redis again) or from Redis pub/sub
(an ack handled by another replica: the waiter re-reads the task).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

from conveyor_scheduler.records import TERMINAL
from conveyor_scheduler.store import Record

FetchMany = Callable[[Sequence[str]], Awaitable[list[Record]]]


class Waiter:
    """One waiting call (or one Pipeline stream's pushed results): the completions it was
    told about since it last looked."""

    __slots__ = ("event", "finished", "stale")

    def __init__(self) -> None:
        self.event = asyncio.Event()
        self.finished: dict[str, Record | None] = {}
        """task id -> its finished record, or None when it must be re-read."""
        self.stale = False
        """Everything must be re-read (the event bus reconnected)."""


def _terminal(rec: Record) -> bool:
    return int(rec.get(b"st", 0)) in TERMINAL


class ResultWaiters:
    def __init__(self) -> None:
        self._waiting: dict[str, set[Waiter]] = {}

    def waiting(self, task_id: str) -> bool:
        """Someone on this replica waits for `task_id` (so its final record is worth building)."""
        return task_id in self._waiting

    def follow(self, task_ids: Sequence[str], waiter: Waiter) -> None:
        """Tells `waiter` of each of `task_ids`' completion until `unfollow`."""
        for task_id in task_ids:
            self._waiting.setdefault(task_id, set()).add(waiter)

    def unfollow(self, task_ids: Sequence[str], waiter: Waiter) -> None:
        for task_id in task_ids:
            waiters = self._waiting.get(task_id)
            if waiters is not None:
                waiters.discard(waiter)
                if not waiters:
                    del self._waiting[task_id]

    def notify(self, task_id: str, record: Record | None = None) -> None:
        """`task_id` finished; `record` is its final record when the caller knows it."""
        for waiter in self._waiting.get(task_id, ()):
            if record is not None or task_id not in waiter.finished:  # pub/sub echo of a local ack
                waiter.finished[task_id] = record
            waiter.event.set()

    def notify_all(self) -> None:
        for waiters in self._waiting.values():
            for waiter in waiters:
                waiter.stale = True
                waiter.event.set()

    async def wait_many(self, task_ids: Sequence[str], timeout: float, fetch: FetchMany,
                        unfinished: Sequence[bool] | None = None) -> list[Record]:
        """The records of `task_ids` (in order) once all are terminal or gone, or as they
        are when the timeout passes. `unfinished[i]` says task i is known not to have
        finished yet (just submitted, and no await since): it is not read first."""
        waiter = Waiter()
        self.follow(task_ids, waiter)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        records: list[Record] = [{b"st": b"2"} for _ in task_ids]  # stands in until read or finished

        async def read(indexes: Sequence[int]) -> None:
            """Reads the tasks at `indexes` into `records`, in one fetch."""
            if indexes:
                for i, rec in zip(indexes, await fetch([task_ids[i] for i in indexes]), strict=True):
                    records[i] = rec

        try:
            await read(range(len(task_ids)) if unfinished is None
                       else [i for i, fresh in enumerate(unfinished) if not fresh])
            pending = {i for i, rec in enumerate(records) if rec and not _terminal(rec)}
            while pending:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    async with asyncio.timeout(remaining):
                        await waiter.event.wait()
                except TimeoutError:
                    break
                waiter.event.clear()
                finished, waiter.finished = waiter.finished, {}
                reread = sorted(pending) if waiter.stale else []
                waiter.stale = False
                for i in list(pending):
                    task_id = task_ids[i]
                    if task_id in finished:
                        rec = finished[task_id]
                        if rec is None:
                            reread.append(i)
                        else:
                            records[i] = rec
                            pending.discard(i)
                reread = sorted(set(reread))
                await read(reread)
                pending -= {i for i in reread if not records[i] or _terminal(records[i])}
            await read(sorted(pending))  # timed out: report each as it is now
            return records
        finally:
            self.unfollow(task_ids, waiter)
