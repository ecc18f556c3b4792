"""The event bus's wake-ups: a replica ignores the wakes it published itself and acts on
everyone else's (and on the payloads older replicas publish: "queue" and "queue|due").

Checked on the parsing itself, and end to end over real Redis pub/sub with two buses,
for both subscription paths (the hiredis connection and redis-py's pub/sub).
"""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio import Redis as AsyncRedis

from conveyor.v1 import task_pb2
from conveyor_scheduler.bus import CANCEL, DONE, STATE, WAKE, EventBus
from conveyor_scheduler.config import SchedulerConfig
from conveyor_scheduler.core import Core
from conveyor_scheduler.fast_redis import FastRedis
from conveyor_scheduler.keys import WAKE_CHANNEL
from conveyor_scheduler.store import Match


class Events:
    """Records what a bus hands to its callbacks."""

    def __init__(self) -> None:
        self.wakes: list[tuple[str, int]] = []
        self.other: list[tuple[str, ...]] = []

    def bus(self, redis: AsyncRedis | None, origin: str, fast: FastRedis | None = None) -> EventBus:
        return EventBus(redis, origin=origin, fast=fast,  # type: ignore[arg-type]
                        on_done=lambda task_id: self.other.append(("done", task_id)),
                        on_wake=lambda queue, due: self.wakes.append((queue, due)),
                        on_state=lambda data: self.other.append(("state", data)),
                        on_cancel=lambda task_id, worker: self.other.append(("cancel", task_id, worker)),
                        on_reconnect=lambda: self.other.append(("reconnect",)))


@pytest.mark.parametrize(("payload", "expected"), [
    pytest.param(b"jobs|0|replica-a", [], id="own-wake-ignored"),
    pytest.param(b"jobs|1700000000000|replica-a", [], id="own-due-wake-ignored"),
    pytest.param(b"jobs|0|replica-b", [("jobs", 0)], id="other-origin"),
    pytest.param(b"jobs|1700000000000|replica-b", [("jobs", 1_700_000_000_000)], id="other-origin-with-due"),
    pytest.param(b"jobs", [("jobs", 0)], id="legacy-queue-only"),
    pytest.param(b"jobs|1700000000000", [("jobs", 1_700_000_000_000)], id="legacy-queue-and-due"),
    pytest.param(b"jobs|0|", [("jobs", 0)], id="empty-origin"),
    pytest.param(b"jobs|0|replica-a2", [("jobs", 0)], id="origin-with-our-prefix"),
])
def test_wake_origin_filtering(payload: bytes, expected: list[tuple[str, int]]) -> None:
    events = Events()
    events.bus(None, "replica-a")._message(WAKE, payload)
    assert events.wakes == expected


def test_other_channels_reach_their_callbacks() -> None:
    events = Events()
    bus = events.bus(None, "replica-a")
    bus._message(DONE, b"01ID")
    bus._message(STATE, b"01ID|3|1|2")
    bus._message(CANCEL, b"01ID|worker-7")
    assert events.other == [("done", "01ID"), ("state", "01ID|3|1|2"), ("cancel", "01ID", "worker-7")]
    assert events.wakes == []


@pytest.mark.parametrize("fast", [True, False], ids=["hiredis", "redis-py"])
def test_two_replicas_hear_each_others_wakes_but_not_their_own(redis_url: str, fast: bool) -> None:
    async def scenario() -> tuple[Events, Events]:
        conn = AsyncRedis.from_url(redis_url)
        a_events, b_events = Events(), Events()
        fast_a = FastRedis(redis_url) if fast else None
        fast_b = FastRedis(redis_url) if fast else None
        a, b = a_events.bus(conn, "replica-a", fast_a), b_events.bus(conn, "replica-b", fast_b)
        try:
            for bus in (a, b):
                bus.start()
            await asyncio.wait_for(asyncio.gather(a.ready.wait(), b.ready.wait()), 10)
            await a.publish_wake("orders")
            await a.publish_wake("orders", 1234)
            await conn.publish(WAKE_CHANNEL, "legacy")  # an older replica's payload
            await b.publish_wake("invoices")  # the witness: a hears it after its own wakes
            async with asyncio.timeout(10):
                while len(a_events.wakes) < 2 or len(b_events.wakes) < 3:
                    await asyncio.sleep(0.005)
            return a_events, b_events
        finally:
            await a.close()
            await b.close()
            for f in (fast_a, fast_b):
                if f is not None:
                    await f.aclose()
            await conn.aclose()

    a_events, b_events = asyncio.run(scenario())
    # Messages on one subscription arrive in publish order, so a's own wakes came (and were dropped) first.
    assert a_events.wakes == [("legacy", 0), ("invoices", 0)]
    assert b_events.wakes == [("orders", 0), ("orders", 1234), ("legacy", 0)]


def test_submit_publishes_its_wake_only_when_a_task_was_queued(redis_url: str) -> None:
    """submit.lua publishes "queue|0|origin" when it queued a task: the submitting replica
    ignores it, another acts on it; a batch that was all leased or scheduled publishes none."""
    def spec(queue: str, **fields: object) -> task_pb2.TaskSpec:
        return task_pb2.TaskSpec(name="t.add", queue=queue, **fields)  # type: ignore[arg-type]

    async def scenario() -> tuple[Events, Events]:
        conn = AsyncRedis.from_url(redis_url)
        core = Core(SchedulerConfig(redis_url=redis_url, scheduler_id="replica-a"), conn)
        a_events, b_events = Events(), Events()
        a, b = a_events.bus(conn, "replica-a", FastRedis(redis_url)), b_events.bus(conn, "replica-b")
        try:
            for bus in (a, b):
                bus.start()
            await asyncio.wait_for(asyncio.gather(a.ready.wait(), b.ready.wait()), 10)
            store, check = core.store, core.submission.check_specs
            await store.submit(check([spec("leased")]), [Match("leased", "w", 1, 30_000)], "replica-a")
            await store.submit(check([spec("later", countdown={"seconds": 60})]), [], "replica-a")
            await store.submit(check([spec("silent")]), [], "")  # no origin: no publish
            await store.submit(check([spec("queued")]), [], "replica-a")
            await conn.publish(WAKE_CHANNEL, "witness|0|replica-b")
            async with asyncio.timeout(10):
                while not a_events.wakes or not b_events.wakes:
                    await asyncio.sleep(0.005)
            return a_events, b_events
        finally:
            await a.close()
            await b.close()
            await a.fast.aclose()  # type: ignore[union-attr]
            await core.store.aclose()
            await conn.aclose()

    a_events, b_events = asyncio.run(scenario())
    assert a_events.wakes == [("witness", 0)]  # its own "queued" wake was dropped
    assert b_events.wakes[0] == ("queued", 0)  # the only submit that published
