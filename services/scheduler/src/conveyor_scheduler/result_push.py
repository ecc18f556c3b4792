"""Pushed results: the outcomes of the tasks a Pipeline stream submitted with push_result,
sent on that stream when they finish, so the producer's `result()` needs no call.

One `ResultPush` per stream follows its tasks in the result waiters (the same wake-ups
GetResults(wait) gets: in-process from an ack on this replica, with the final record, or
from the event bus when another replica recorded it, to be re-read). A sender task wakes
on the first completion and sends whatever has finished by then in one message, reading
in one call the records it was not handed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence

from redis.exceptions import RedisError

from conveyor.v1 import task_pb2, task_service_pb2
from conveyor_scheduler.records import TERMINAL, to_result
from conveyor_scheduler.store import Record, Submitted
from conveyor_scheduler.waiters import ResultWaiters, Waiter

log = logging.getLogger(__name__)

MAX_FOLLOWED = 100_000
"""Unfinished tasks one stream may follow (TaskService.Pipeline's documented limit)."""
MAX_PER_MESSAGE = 500
"""Outcomes in one pushed message (as documented in TaskService.Pipeline)."""
RETRY_S = 0.5
"""Pause before reading finished tasks again after Redis failed to answer."""

FetchRecords = Callable[[Sequence[tuple[str, str]]], Awaitable[list[Record]]]
"""(queue, task id) pairs -> their records, in one round trip."""
Send = Callable[[task_service_pb2.GetResultsResponse], Awaitable[None]]


class _StreamGone(Exception):
    """Writing on the stream failed: it has ended."""


class ResultPush:
    def __init__(self, waiters: ResultWaiters, fetch: FetchRecords, send: Send) -> None:
        self.waiters = waiters
        self.fetch = fetch
        self.send = send
        self.waiter = Waiter()
        self.followed: dict[str, str] = {}
        """task id -> queue, until its outcome is sent."""
        self.sender: asyncio.Task[None] | None = None

    def follow(self, specs: Sequence[task_pb2.TaskSpec], submitted: Sequence[Submitted]) -> list[int]:
        """Follows the tasks whose spec asks for a push; returns their indexes
        (SubmittedTask.result_pushed), usually none for a batch. Called right after the store
        call, with nothing awaited in between, so no completion is missed; a duplicate that has
        already finished is read and sent at once."""
        granted: list[int] = []
        new: list[str] = []
        for i, spec in enumerate(specs):
            if not spec.push_result:
                continue
            sub = submitted[i]
            if sub.id not in self.followed and len(self.followed) >= MAX_FOLLOWED:
                continue
            granted.append(i)
            if sub.id not in self.followed:
                self.followed[sub.id] = sub.queue
                new.append(sub.id)
                if sub.state in TERMINAL:
                    self.waiter.finished[sub.id] = None
                    self.waiter.event.set()
        if new:
            self.waiters.follow(new, self.waiter)
            if self.sender is None:
                self.sender = asyncio.get_running_loop().create_task(self._send_finished())
        return granted

    async def _send_finished(self) -> None:
        waiter = self.waiter
        while True:
            await waiter.event.wait()
            waiter.event.clear()
            finished, waiter.finished = waiter.finished, {}
            if waiter.stale:  # the event bus reconnected: any followed task may have finished unheard
                waiter.stale = False
                finished = dict.fromkeys(self.followed) | finished
            unread = [(self.followed[t], t) for t, rec in finished.items() if rec is None and t in self.followed]
            if unread:
                try:
                    records = await self.fetch(unread)
                except (RedisError, OSError) as exc:  # Redis is away: look again shortly
                    log.warning("pushed results: reading %d finished tasks failed (%s); retrying", len(unread), exc)
                    waiter.finished = finished | waiter.finished
                    waiter.event.set()
                    await asyncio.sleep(RETRY_S)
                    continue
                for (_, task_id), rec in zip(unread, records, strict=True):
                    finished[task_id] = rec
            try:
                await self._send(finished)
            except _StreamGone:  # the client reads what it did not get
                log.debug("pushed results not sent: the stream is gone", exc_info=True)
                return
            except Exception:  # a bug must not stop the other pushes: those tasks' clients read instead
                log.exception("pushed results: %d outcomes not sent", len(finished))

    async def _send(self, finished: dict[str, Record | None]) -> None:
        done = [(t, rec) for t, rec in finished.items()
                if t in self.followed and rec is not None and (not rec or int(rec.get(b"st", 0)) in TERMINAL)]
        if not done:
            return
        ids = [t for t, _ in done]
        self.waiters.unfollow(ids, self.waiter)
        for task_id in ids:
            del self.followed[task_id]
        results = [to_result(t, rec) if rec else task_service_pb2.GetResultResponse(task_id=t) for t, rec in done]
        for first in range(0, len(results), MAX_PER_MESSAGE):
            try:
                await self.send(task_service_pb2.GetResultsResponse(results=results[first:first + MAX_PER_MESSAGE]))
            except Exception as exc:
                raise _StreamGone from exc

    def close(self) -> None:
        """The stream ended: stop following."""
        self.waiters.unfollow(list(self.followed), self.waiter)
        self.followed.clear()
        if self.sender is not None:
            self.sender.cancel()
