"""A broadcast signal: wakes every waiter, and a waiter never misses a change it has not seen."""

from __future__ import annotations

import asyncio


class Signal:
    """Generation counter plus an event replaced on every notify.

    A waiter notes ``gen`` before it looks at shared state, then waits for a change of
    ``gen``; a notify that lands in between is never lost.
    """

    __slots__ = ("_event", "gen")

    def __init__(self) -> None:
        self.gen = 0
        self._event = asyncio.Event()

    def notify(self) -> None:
        self.gen += 1
        event, self._event = self._event, asyncio.Event()
        event.set()

    async def wait_change(self, seen: int, timeout: float | None = None) -> bool:
        """Waits until gen differs from `seen`; False on timeout."""
        if self.gen != seen:
            return True
        try:
            async with asyncio.timeout(timeout):
                await self._event.wait()
        except TimeoutError:
            return self.gen != seen
        return True


async def wait_any(signals: list[tuple[Signal, int]], timeout: float) -> bool:
    """Waits for a change on any of the (signal, seen) pairs; False on timeout."""
    if any(sig.gen != seen for sig, seen in signals):
        return True
    waiters = [asyncio.ensure_future(sig.wait_change(seen)) for sig, seen in signals]
    try:
        done, _ = await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        return bool(done)
    finally:
        for w in waiters:
            w.cancel()
