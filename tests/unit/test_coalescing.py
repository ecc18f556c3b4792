"""The Coalescer's logic: a lone call runs at once; calls that arrive while one is in flight
wait for it and then share one batch, each getting its own slice; failure and cancellation reach the right
callers. The batch function stands in for the store here; the integration and fault suites
run it with the real scheduler."""

from __future__ import annotations

import asyncio

import pytest

from conveyor_scheduler.coalescing import Coalescer


class Recorder:
    """A batch function that records each batch and can be held open or made to fail."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.fail: Exception | None = None

    async def __call__(self, items: list[int]) -> list[int]:
        self.batches.append(list(items))
        await self.gate.wait()
        if self.fail is not None:
            raise self.fail
        return [i * 10 for i in items]


async def turns(n: int = 5) -> None:
    """Lets the loop run a few iterations (calls join, a batch task starts)."""
    for _ in range(n):
        await asyncio.sleep(0)


def test_a_lone_call_runs_at_once_as_its_own_batch() -> None:
    async def main() -> None:
        run = Recorder()
        c = Coalescer(run, max_items=100)
        assert await c([1, 2]) == [10, 20]
        assert await c([3]) == [30]
        assert run.batches == [[1, 2], [3]]

    asyncio.run(main())


def test_calls_arriving_while_one_is_in_flight_share_one_batch() -> None:
    async def main() -> None:
        run = Recorder()
        run.gate.clear()
        c = Coalescer(run, max_items=100)
        first = asyncio.create_task(c([1]))
        await asyncio.sleep(0)  # the first call is in flight, held at the gate
        others = [asyncio.create_task(c([n, n + 1])) for n in (10, 20, 30)]
        await turns()
        assert run.batches == [[1]], "the others wait for the call in flight"
        run.gate.set()
        assert await first == [10]
        assert [await o for o in others] == [[100, 110], [200, 210], [300, 310]]
        assert run.batches == [[1], [10, 11, 20, 21, 30, 31]]

    asyncio.run(main())


def test_a_batch_never_exceeds_max_items() -> None:
    async def main() -> None:
        run = Recorder()
        run.gate.clear()
        c = Coalescer(run, max_items=4)
        first = asyncio.create_task(c([0]))
        await asyncio.sleep(0)
        calls = [asyncio.create_task(c([n, n])) for n in (1, 2, 3)]
        big = asyncio.create_task(c([9] * 5))  # over the limit: runs alone, at once
        await turns()
        run.gate.set()
        await asyncio.gather(first, big, *calls)
        assert sorted(run.batches) == sorted([[0], [9] * 5, [1, 1, 2, 2], [3, 3]])
        assert [c.result() for c in calls] == [[10, 10], [20, 20], [30, 30]]

    asyncio.run(main())


def test_a_failed_batch_fails_each_of_its_callers() -> None:
    async def main() -> None:
        run = Recorder()
        run.gate.clear()
        c = Coalescer(run, max_items=100)
        first = asyncio.create_task(c([1]))
        await asyncio.sleep(0)
        run.fail = ConnectionError("redis went away")
        joined = [asyncio.create_task(c([n])) for n in (2, 3)]
        await turns()
        run.gate.set()
        for call in (first, *joined):
            with pytest.raises(ConnectionError, match="redis went away"):
                await call

    asyncio.run(main())


def test_a_cancelled_caller_does_not_cancel_its_batch() -> None:
    async def main() -> None:
        run = Recorder()
        run.gate.clear()
        c = Coalescer(run, max_items=100)
        first = asyncio.create_task(c([1]))
        await asyncio.sleep(0)
        gone, stays = asyncio.create_task(c([2])), asyncio.create_task(c([3]))
        await turns()
        gone.cancel()
        run.gate.set()
        assert await stays == [30]
        assert await first == [10]
        assert gone.cancelled()
        assert run.batches == [[1], [2, 3]]

    asyncio.run(main())
