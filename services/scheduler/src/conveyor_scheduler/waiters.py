"""Result waiters: GetResult(wait) sleeps on an event that a completion sets.

Completions arrive in-process (an ack handled by this replica) or from Redis pub/sub
(an ack handled by another replica); either wakes the waiter, which re-reads the task.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from conveyor_scheduler.records import TERMINAL
from conveyor_scheduler.store import Record


class ResultWaiters:
    def __init__(self) -> None:
        self._waiting: dict[str, set[asyncio.Event]] = {}

    def notify(self, task_id: str) -> None:
        for event in self._waiting.get(task_id, ()):
            event.set()

    def notify_all(self) -> None:
        for events in self._waiting.values():
            for event in events:
                event.set()

    async def wait(self, task_id: str, timeout: float, fetch: Callable[[], Awaitable[Record]]) -> Record:
        """Returns the task record once it is terminal, gone, or the timeout passes."""
        event = asyncio.Event()
        self._waiting.setdefault(task_id, set()).add(event)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        try:
            while True:
                event.clear()
                rec = await fetch()
                remaining = deadline - loop.time()
                if not rec or int(rec.get(b"st", 0)) in TERMINAL or remaining <= 0:
                    return rec
                try:
                    async with asyncio.timeout(remaining):
                        await event.wait()
                except TimeoutError:
                    return await fetch()
        finally:
            events = self._waiting[task_id]
            events.discard(event)
            if not events:
                del self._waiting[task_id]
