"""ResultPush's logic with the real ResultWaiters: what is followed, what a wake-up sends, the
event bus reconnecting (everything followed is read again), and closing. Redis and the stream
stand behind two small functions here; the integration tests run it for real."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from conveyor.v1 import task_pb2, task_service_pb2
from conveyor_scheduler.result_push import MAX_PER_MESSAGE, ResultPush
from conveyor_scheduler.store import Record, Submitted
from conveyor_scheduler.waiters import ResultWaiters

QUEUED, SUCCEEDED, FAILED = task_pb2.TASK_STATE_QUEUED, task_pb2.TASK_STATE_SUCCEEDED, task_pb2.TASK_STATE_FAILED


def spec(push: bool = True) -> task_pb2.TaskSpec:
    return task_pb2.TaskSpec(name="t.add", push_result=push)


def submitted(task_id: str, state: int = QUEUED) -> Submitted:
    return Submitted(task_id, "q", state, False, "", 0, 0, 0)


class Harness:
    def __init__(self) -> None:
        self.waiters = ResultWaiters()
        self.records: dict[str, Record] = {}
        self.reads: list[list[str]] = []
        self.sent: list[list[task_service_pb2.GetResultResponse]] = []
        self.push = ResultPush(self.waiters, self.fetch, self.send)

    async def fetch(self, pairs: Sequence[tuple[str, str]]) -> list[Record]:
        self.reads.append([task_id for _, task_id in pairs])
        return [self.records.get(task_id, {}) for _, task_id in pairs]

    async def send(self, results: task_service_pb2.GetResultsResponse) -> None:
        self.sent.append(list(results.results))


async def settle() -> None:
    for _ in range(5):  # the sender task runs, reads, sends
        await asyncio.sleep(0)


def test_a_local_ack_is_sent_without_a_read_and_only_once() -> None:
    async def main() -> None:
        h = Harness()
        granted = h.push.follow([spec(), spec(False)], [submitted("a"), submitted("b")])
        assert granted == [0] and h.waiters.waiting("a") and not h.waiters.waiting("b")
        h.waiters.notify("a", {b"st": str(SUCCEEDED).encode(), b"r": b"5", b"at": b"1"})
        await settle()
        assert [[r.task_id for r in batch] for batch in h.sent] == [["a"]] and h.reads == []
        assert h.sent[0][0].result.data == b"5"
        h.waiters.notify("a")  # the bus's echo of the same ack: nobody follows "a" any more
        await settle()
        assert len(h.sent) == 1 and not h.waiters.waiting("a")
        h.push.close()

    asyncio.run(main())


def test_the_bus_reconnecting_reads_every_followed_task_and_sends_the_finished() -> None:
    async def main() -> None:
        h = Harness()
        h.push.follow([spec(), spec(), spec()], [submitted("a"), submitted("b"), submitted("c")])
        h.records = {"a": {b"st": str(FAILED).encode(), b"et": b"Boom"}, "b": {b"st": str(QUEUED).encode()}}
        h.waiters.notify_all()
        await settle()
        assert sorted(h.reads[0]) == ["a", "b", "c"]
        sent = {r.task_id: r for batch in h.sent for r in batch}
        assert set(sent) == {"a", "c"}  # c's record is gone (expired): reported as unknown, state 0
        assert sent["a"].state == FAILED and sent["a"].error.type == "Boom" and sent["c"].state == 0
        assert h.waiters.waiting("b") and not h.waiters.waiting("a")
        h.push.close()
        assert not h.waiters.waiting("b")

    asyncio.run(main())


def test_a_finished_duplicate_is_sent_at_once_and_big_bursts_are_split() -> None:
    async def main() -> None:
        h = Harness()
        h.records = {"done": {b"st": str(SUCCEEDED).encode(), b"r": b"1"}}
        h.push.follow([spec()], [submitted("done", SUCCEEDED)])
        await settle()
        assert h.reads == [["done"]] and [r.task_id for r in h.sent[0]] == ["done"]
        ids = [f"t{i}" for i in range(MAX_PER_MESSAGE + 1)]
        h.push.follow([spec()] * len(ids), [submitted(i) for i in ids])
        for task_id in ids:
            h.waiters.notify(task_id, {b"st": str(SUCCEEDED).encode(), b"r": b"1"})
        await settle()
        assert [len(batch) for batch in h.sent[1:]] == [MAX_PER_MESSAGE, 1]
        h.push.close()

    asyncio.run(main())
