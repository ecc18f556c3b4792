"""The runner interface, and the runner of `async def` handlers (on the event loop).

A runner runs attempts (`outcomes.Attempt`) and reports each one that ran exactly once
through `on_done(attempt, ack)`; after a burst of reports it calls `after_batch()` so the
worker sends their acks in one report. The worker never looks inside a runner:

- open(): get ready before the first attempt (the process pool starts its children);
- start(attempt): run it now, or as soon as the runner has a free slot;
- withdraw(attempt): take back an attempt that has not started (True), so it can be handed
  back or reported cancelled without running; no report follows;
- cancel(attempt): a cancel request for a started attempt: it stops as well as the runner
  can and is reported CANCELLED (a thread cannot be stopped: its handler sees
  `current_task().cancelled`);
- hand_back(attempt): stop it and report nothing (shutdown past the grace period, a lost lease);
- resize(slots): run that many attempts at once from now on;
- close(): stop everything; nothing is reported any more.

Every runner applies the same policy (`outcomes.py`) and time limits (`limits.py`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Protocol

from conveyor.context import bind
from conveyor.errors import SoftTimeLimitExceeded
from conveyor.v1 import task_pb2
from conveyor_worker import outcomes
from conveyor_worker.limits import LimitTimer
from conveyor_worker.outcomes import Attempt

log = logging.getLogger(__name__)

OnDone = Callable[[Attempt, task_pb2.TaskAck], None]


class Runner(Protocol):
    queues: bool
    """Starts more attempts than its slots (they wait inside it for one, in order)."""

    def open(self) -> None: ...
    def start(self, attempt: Attempt) -> None: ...
    def withdraw(self, attempt: Attempt) -> bool: ...
    def cancel(self, attempt: Attempt) -> None: ...
    def hand_back(self, attempt: Attempt) -> None: ...
    def resize(self, slots: int) -> None: ...
    def close(self) -> None: ...


class LoopRunner:
    """`async def` handlers, each an asyncio task. A soft limit, a hard limit and a cancel
    request all cancel the coroutine (CancelledError at its next await); what it is reported
    as depends on which came first."""

    queues = False

    def __init__(self, on_done: OnDone, after_batch: Callable[[], None]) -> None:
        self._on_done, self._after_batch = on_done, after_batch
        self._limits = LimitTimer(self._soft_limit, self._hard_limit)

    def open(self) -> None:
        pass

    def start(self, attempt: Attempt) -> None:
        attempt.started = True
        attempt.handle = asyncio.create_task(self._run(attempt), name=f"task:{attempt.task_id}")
        self._limits.watch(attempt)

    async def _run(self, attempt: Attempt) -> None:
        ctx = attempt.ctx
        bind(ctx)
        try:
            value = await attempt.definition.fn(*attempt.args, **attempt.kwargs)
        except asyncio.CancelledError:
            if attempt.abandoned:
                return  # handed back: the task runs again elsewhere
            if attempt.stuck:
                ack = outcomes.hard_limit(attempt, f"cancelled (deadline {ctx.deadline:.3f})")
            elif ctx.soft_time_limit_exceeded and not ctx.cancelled:
                ack = outcomes.raised(attempt, SoftTimeLimitExceeded("the attempt ran past its soft time limit"))
            elif ctx.cancelled:
                ack = outcomes.cancelled(attempt.task_id, attempt.lease_token)
            else:
                raise
        except Exception as exc:  # noqa: BLE001 - any handler error is the task's outcome
            ack = outcomes.raised(attempt, exc)
        else:
            ack = outcomes.outcome(attempt, value)
        finally:
            self._limits.forget(attempt)
        if not attempt.abandoned:
            attempt.ack = ack
            self._on_done(attempt, ack)
            self._after_batch()

    def _soft_limit(self, attempt: Attempt) -> None:
        attempt.ctx._soft.set()
        attempt.handle.cancel("soft time limit exceeded")

    def _hard_limit(self, attempt: Attempt) -> None:
        attempt.stuck = True
        attempt.handle.cancel("time limit exceeded")

    def withdraw(self, attempt: Attempt) -> bool:
        return False  # started at once: never queued

    def cancel(self, attempt: Attempt) -> None:
        attempt.handle.cancel("cancel requested")

    def hand_back(self, attempt: Attempt) -> None:
        attempt.abandoned = True
        attempt.handle.cancel("handed back")

    def resize(self, slots: int) -> None:
        pass  # the worker holds async attempts beyond the slots in `waiting`

    def close(self) -> None:
        self._limits.clear()
