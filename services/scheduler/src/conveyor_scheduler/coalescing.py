"""Calls that arrive while one is in flight, served together by one call of a batch function.

Many producers each submitting one task at a time arrive as many small Submits (from many
connections and streams). Each would be its own script call; coalesced, the ones that
arrive together cost one script call per queue, the way one client's merged sends already
do (issue 17). Only while a call is already in flight do callers wait (group commit): a
lone producer's submit goes straight to the store, as before.

Measured, same machine and hour, before and after (`python -m bench --only
ordinary,many_producers --systems conveyor`, report fields redis_calls_per_task and
cpu_ms_per_task): 8 producer processes → script calls per task 1.20-1.23 → 0.70-0.83, Redis
commands per task 14.7-14.9 → 11.6-11.7, Redis CPU per task 0.121 → 0.104-0.113 ms. The
throughput moved within noise (996-1,022 → 969-1,163 tasks/s): on 2 cores it is bound by
the producers' own gRPC cost, not by the store calls. One producer: no change (it never
has a call in flight when it submits).
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

BatchFn = Callable[[list[T]], Awaitable[list[R]]]


class _Open(Generic[T, R]):
    """The batch now filling: its items, and each caller's share of them."""

    __slots__ = ("callers", "items")

    def __init__(self) -> None:
        self.items: list[T] = []
        self.callers: list[tuple[int, int, asyncio.Future[list[R]]]] = []


class Coalescer(Generic[T, R]):
    """`await coalescer(items)` returns `run(batch)`'s results for `items`. A call made while
    no batch is in flight runs at once, alone; calls made while one is in flight wait for it
    and then run together, as one batch (up to `max_items`; a larger call runs alone, at
    once): group commit, so batches grow with the load and a lone caller waits for nothing.
    A failed batch fails each of its callers with the same exception; a caller that is
    cancelled does not cancel its batch (the others still get their answer)."""

    def __init__(self, run: BatchFn[T, R], max_items: int) -> None:
        self.run = run
        self.max_items = max_items
        self._open: _Open[T, R] | None = None
        """The batch filling while another is in flight."""
        self._in_flight = 0
        self._running: set[asyncio.Task[None]] = set()

    async def __call__(self, items: list[T]) -> list[R]:
        if len(items) > self.max_items:
            return await self.run(items)
        if not self._in_flight:
            self._in_flight += 1
            try:
                return await self.run(items)
            finally:
                self._next()
        batch = self._open
        if batch is None or len(batch.items) + len(items) > self.max_items:
            if batch is not None:  # full: it goes next; this call starts the one after
                self._start(batch)
            batch = self._open = _Open()
        future: asyncio.Future[list[R]] = asyncio.get_running_loop().create_future()
        batch.callers.append((len(batch.items), len(items), future))
        batch.items.extend(items)
        return await future

    def _next(self) -> None:
        """A run is answered: when none is left in flight, start the batch that filled meanwhile."""
        self._in_flight -= 1
        if not self._in_flight and self._open is not None:
            self._start(self._open)

    def _start(self, batch: _Open[T, R]) -> None:
        if self._open is batch:
            self._open = None
        self._in_flight += 1
        # A batch serves many callers: it runs in a context of its own, not the caller's that
        # happened to start it (whose trace context, for one, it is not part of).
        task = asyncio.get_running_loop().create_task(self._serve(batch), context=contextvars.Context())
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def _serve(self, batch: _Open[T, R]) -> None:
        try:
            results = await self.run(batch.items)
        except Exception as exc:  # noqa: BLE001 - handed to every caller of the batch
            for _, _, future in batch.callers:
                if not future.done():
                    future.set_exception(exc)
            return
        except BaseException:  # cancelled (the server is stopping): so are its callers
            for _, _, future in batch.callers:
                future.cancel()
            raise
        finally:
            self._next()
        for start, count, future in batch.callers:
            if not future.done():  # its caller was cancelled: nothing to hand over
                future.set_result(results[start:start + count])
