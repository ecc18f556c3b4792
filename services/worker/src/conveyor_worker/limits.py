"""Time limits of the attempts a runner has in progress, on one loop timer.

The timer is armed for the earliest limit of them all (a timer per attempt cost more than a
short task). A runner says what reaching each limit means for its attempts: the loop runner
cancels the coroutine, the thread runner sets the soft flag or abandons the thread, the
process runner terminates the child.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from conveyor_worker.outcomes import Attempt

_TIMER_SLACK = 0.001
"""How early a limit may be seen as reached: uvloop's timers count whole milliseconds and
fire up to half of one early (asyncio's own loop allows its clock's resolution)."""


class LimitTimer:
    def __init__(self, on_soft: Callable[[Attempt], None], on_hard: Callable[[Attempt], None]) -> None:
        self._on_soft, self._on_hard = on_soft, on_hard
        self._limited: set[Attempt] = set()
        """Attempts whose limits the timer watches (abandoned ones until its next round)."""
        self._timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def watch(self, attempt: Attempt) -> None:
        """Starts watching `attempt`'s limits (its deadlines are wall-clock times)."""
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        ctx = attempt.ctx
        now, wall = loop.time(), time.time()
        first = attempt.due = now + max(ctx.deadline - wall, 0.001)
        if ctx.soft_deadline is not None:
            attempt.soft_due = now + max(ctx.soft_deadline - wall, 0)
            first = min(first, attempt.soft_due)
        self._limited.add(attempt)
        if self._timer is None or first < self._timer.when():
            self._arm(first)

    def forget(self, attempt: Attempt) -> None:
        self._limited.discard(attempt)

    def clear(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._limited.clear()

    def _arm(self, when: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self._loop.call_at(when, self._check)  # type: ignore[union-attr]

    def _check(self) -> None:
        """Reports soft limits, then hard ones (forgetting those), and re-arms for the next."""
        self._timer = None
        horizon = self._loop.time() + _TIMER_SLACK  # type: ignore[union-attr]
        first = None
        for attempt in list(self._limited):
            if attempt.abandoned:
                self._limited.discard(attempt)
                continue
            if attempt.ack is not None or attempt.error is not None:
                continue  # finished: its runner reports it
            if attempt.soft_due is not None and attempt.soft_due <= horizon:
                attempt.soft_due = None
                self._on_soft(attempt)
            if attempt.due <= horizon:
                self._limited.discard(attempt)
                self._on_hard(attempt)
                continue
            due = attempt.due if attempt.soft_due is None else min(attempt.due, attempt.soft_due)
            first = due if first is None else min(first, due)
        if first is not None:
            self._arm(first)
