"""`client.admin`'s task filter, queue stats and paging loop, without a scheduler: a fake stub
answers ListTasks, so both transports' iter_tasks are checked against the same pages."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from typing import Any

import pytest

from conveyor import QueueInfo, TaskState
from conveyor.admin import Admin, AsyncAdmin
from conveyor.admin_tasks import task_filter
from conveyor.v1 import admin_service_pb2 as pb
from conveyor.v1 import task_pb2


def test_filter_takes_state_names_and_members_and_resolves_relative_times() -> None:
    flt = task_filter("q", ["failed", "TASK_STATE_DEAD", TaskState.QUEUED, " Active "], name="t.add", since=3600)
    assert list(flt.states) == [5, 8, 2, 3] and (flt.queue, flt.name, flt.name_prefix) == ("q", "t.add", "")
    assert abs(flt.submitted_after.ToNanoseconds() / 1e9 - (time.time() - 3600)) < 5
    assert not flt.HasField("submitted_before")
    assert list(task_filter(states="cancelled").states) == [6]
    at = dt.datetime(2024, 5, 1, 14, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    assert task_filter(until=at).submitted_before.ToJsonString() == "2024-05-01T12:00:00Z"
    with pytest.raises(ValueError, match="unknown task state 'done'"):
        task_filter(states=["done"])
    with pytest.raises(ValueError, match="naive"):
        task_filter(since=dt.datetime(2024, 5, 1))


def test_queue_info_reads_durations_windows_and_rates() -> None:
    stats = pb.QueueStats(queue="q", queued_by_priority=[3] + [0] * 9, queued=3, paused=True, unserved_names=["t.x"])
    stats.oldest_queued_age.FromMilliseconds(1500)
    w = stats.windows.add(minutes=1, submitted=120, succeeded=30)
    w.covered.FromSeconds(60)
    w.wait_p95.FromMilliseconds(250)
    info = QueueInfo.from_proto(stats)
    assert (info.name, info.queued, info.queued_by_priority[0], info.oldest_queued_age) == ("q", 3, 3, 1.5)
    assert info.paused and info.unserved_names == ("t.x",) and list(info.windows) == [1]
    one = info.windows[1]
    assert (one.rate("submitted"), one.rate("succeeded"), one.rate("failed")) == (2.0, 0.5, 0.0)
    assert (one.wait_p95, one.wait_p50, one.run_p95) == (0.25, None, None)
    assert QueueInfo.from_proto(pb.QueueStats(queue="e")).oldest_queued_age is None


PAGES = {"": (["a", "b"], "c1"), "c1": ([], "c2"), "c2": (["c"], "c3"), "c3": (["d"], "")}
"""cursor -> (task ids, next cursor): a short page and an empty one with a cursor still to follow."""


class FakeStub:
    def __init__(self) -> None:
        self.requests: list[pb.ListTasksRequest] = []

    def ListTasks(self, req: pb.ListTasksRequest, timeout: float) -> pb.ListTasksResponse:
        self.requests.append(req)
        ids, cursor = PAGES[req.cursor]
        return pb.ListTasksResponse(tasks=[task_pb2.Task(id=i) for i in ids], next_cursor=cursor)


class AsyncFakeStub(FakeStub):
    async def ListTasks(self, req: pb.ListTasksRequest, timeout: float) -> pb.ListTasksResponse:  # type: ignore[override]
        return super().ListTasks(req, timeout)


def _admin(cls: type[Any], stub: FakeStub) -> Any:
    admin = cls.__new__(cls)
    admin._stub, admin._client = stub, type("C", (), {"timeout": 5.0})()
    return admin


def test_iter_tasks_follows_every_cursor_with_one_filter_on_both_clients() -> None:
    sync_stub, async_stub = FakeStub(), AsyncFakeStub()
    got = [t.id for t in _admin(Admin, sync_stub).iter_tasks("q", states=["failed"], since=60, page_size=2)]

    async def collect() -> list[str]:
        return [t.id async for t in _admin(AsyncAdmin, async_stub).iter_tasks("q", states=["failed"], since=60,
                                                                               page_size=2)]

    assert got == asyncio.run(collect()) == ["a", "b", "c", "d"]
    for stub in (sync_stub, async_stub):
        assert [r.cursor for r in stub.requests] == ["", "c1", "c2", "c3"]
        assert {r.page_size for r in stub.requests} == {2}
        assert all(r.filter == stub.requests[0].filter for r in stub.requests)  # `since` resolved once


def test_iter_tasks_fetches_pages_only_as_they_are_read() -> None:
    stub = FakeStub()
    tasks = _admin(Admin, stub).iter_tasks()
    assert next(tasks).id == "a" and len(stub.requests) == 1
