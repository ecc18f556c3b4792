"""Beat against real Redis: the ScheduleService over real gRPC, firings through the normal
submit path, pause/resume, update, delete, end time, bad input, and cron across DST with an
injected clock (an in-process Core whose clock the test moves, so months pass instantly).

Nothing sleeps for a fixed time: "it did not fire" is checked against a witness schedule
that keeps firing meanwhile.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import json
import re
from collections import defaultdict
from collections.abc import Callable, Iterator
from typing import Any
from zoneinfo import ZoneInfo

import grpc
import pytest
import redis
from croniter import croniter
from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp

from conveyor import AlreadyExists, Client, NotFound
from conveyor.v1 import schedule_service_pb2 as pb
from conveyor.v1 import schedule_service_pb2_grpc as pb_grpc
from conveyor.v1 import task_pb2
from conveyor_scheduler.config import Limits, SchedulerConfig
from conveyor_scheduler.core import Core
from conveyor_scheduler.redis_clients import async_client
from conveyor_scheduler.schedules import to_schedule
from tests.harness import Cluster, redis_client, wait_for

ACTIVE, PAUSED, ENDED = pb.SCHEDULE_STATE_ACTIVE, pb.SCHEDULE_STATE_PAUSED, pb.SCHEDULE_STATE_ENDED
INVALID = grpc.StatusCode.INVALID_ARGUMENT


@pytest.fixture
def db(redis_url: str) -> Iterator[redis.Redis]:
    client = redis_client(redis_url)
    yield client
    client.close()


def firings(db: redis.Redis, schedule_id: str, queue: str = "default") -> dict[str, list[dict[bytes, bytes]]]:
    """Task records of one schedule by fire time, read from the queue's task hashes."""
    out: dict[str, list[dict[bytes, bytes]]] = defaultdict(list)
    for key in db.scan_iter(match=f"cv:{{q:{queue}}}:t:*", count=1000):
        rec = db.hgetall(key)
        name, _, fire_time = rec.get(b"k", b"").decode().partition("@")
        if name == schedule_id:
            out[fire_time].append(rec)
    return dict(out)


def ms_of(fire_time: str) -> int:
    return int(dt.datetime.fromisoformat(fire_time.replace("Z", "+00:00")).timestamp() * 1000)


def payload(rec: dict[bytes, bytes]) -> Any:
    return json.loads(rec[b"d"])["args"]


def fired_more(client: Client, schedule_id: str, count: int) -> Callable[[], bool]:
    start = client.schedules.get(schedule_id).fire_count
    return lambda: client.schedules.get(schedule_id).fire_count >= start + count


def test_a_schedule_fires_through_the_submit_path(cluster: Cluster, scheduler: str, client: Client,
                                                  db: redis.Redis) -> None:
    created = client.schedules.create("tick", "t.add", [20, 22], every=0.2)
    assert created.state == ACTIVE and created.HasField("next_fire_time") and created.fire_count == 0
    wait_for(lambda: client.schedules.get("tick").fire_count >= 3, 15, what="three firings")
    got = client.schedules.get("tick")
    assert got.next_fire_time.ToMilliseconds() > got.last_fire_time.ToMilliseconds()
    fired = firings(db, "tick")
    times = sorted(ms_of(t) for t in fired)
    assert all(len(recs) == 1 for recs in fired.values())
    assert {b - a for a, b in itertools.pairwise(times)} == {200}  # one task per fire time, 200 ms apart
    rec = fired[max(fired)][0]
    headers = json.loads(rec[b"h"])
    assert headers["conveyor-schedule-id"] == "tick" and headers["conveyor-fire-time"] == max(fired)
    assert payload(rec) == [20, 22] and rec[b"n"] == b"t.add"
    assert got.last_fire_time.ToMilliseconds() >= ms_of(max(fired)) - 200
    # the tasks are ordinary tasks: a worker runs them
    cluster.worker(scheduler)
    assert client.handle(client.schedules.get("tick").last_task_id).result(timeout=30) == 42
    listed = client.schedules.list()
    assert [s.id for s in listed] == ["tick"] and client.schedules.beat_leader()
    with pytest.raises(AlreadyExists):
        client.schedules.create("tick", "t.add", every=1)
    with pytest.raises(NotFound):
        client.schedules.get("nope")
    with pytest.raises(NotFound):
        client.schedules.delete("nope")


def test_pause_and_resume(client: Client, db: redis.Redis) -> None:
    client.schedules.create("witness", "t.add", [0, 0], every=0.1)
    client.schedules.create("napper", "t.add", [1, 1], every=0.1)
    wait_for(lambda: client.schedules.get("napper").fire_count >= 2, 15, what="napper firing")
    paused = client.schedules.pause("napper")
    assert paused.state == PAUSED and not paused.HasField("next_fire_time")
    assert client.schedules.pause("napper").update_time == paused.update_time  # pausing again changes nothing
    pause_ms = paused.update_time.ToMilliseconds()
    count = len(firings(db, "napper"))
    wait_for(fired_more(client, "witness", 8), 15, what="the witness to fire 8 more times")
    assert len(firings(db, "napper")) == count == client.schedules.get("napper").fire_count
    resumed = client.schedules.resume("napper")
    resume_ms = resumed.update_time.ToMilliseconds()
    assert resumed.state == ACTIVE and resumed.next_fire_time.ToMilliseconds() >= resume_ms
    wait_for(lambda: len(firings(db, "napper")) >= count + 3, 15, what="napper firing again")
    times = sorted(ms_of(t) for t in firings(db, "napper"))
    assert not [t for t in times if pause_ms < t < resume_ms]  # the paused time is not caught up
    assert client.schedules.get("napper").missed_count == 0


def test_fire_now_submits_once_outside_the_plan(cluster: Cluster, scheduler: str, client: Client) -> None:
    cluster.worker(scheduler)
    client.schedules.create("hourly", "t.add", [20, 22], every=3600)
    client.schedules.pause("hourly")  # a paused schedule fires by request too
    before = client.schedules.get("hourly")
    task_id = client.schedules.fire("hourly")
    assert client.handle(task_id).result(timeout=30) == 42
    task = client.get_task(task_id)
    assert task.headers["conveyor-schedule-id"] == "hourly" and "conveyor-fire-time" in task.headers
    after = client.schedules.get("hourly")
    assert (after.fire_count, after.last_task_id, after.state) == (before.fire_count, before.last_task_id, PAUSED)
    with pytest.raises(NotFound):
        client.schedules.fire("nope")


def test_update_takes_effect_at_the_next_firing(client: Client, db: redis.Redis) -> None:
    client.schedules.create("upd", "t.add", [1, 1], every=3600)  # would first fire in an hour
    updated = client.schedules.update("upd", "t.add", [2, 2], every=0.2)
    first = updated.next_fire_time.ToMilliseconds()
    assert first - updated.update_time.ToMilliseconds() <= 200
    # the leader slept towards the old fire time; the change notification wakes it at once
    wait_for(lambda: len(firings(db, "upd")) >= 3, 3, what="firings on the new interval")
    assert {json.dumps(payload(r)) for recs in firings(db, "upd").values() for r in recs} == {"[2, 2]"}
    assert min(ms_of(t) for t in firings(db, "upd")) == first
    # change only the arguments while it fires: every fire time after the update's next one has them
    again = client.schedules.update("upd", "t.add", [3, 3], every=0.2)
    switch = again.next_fire_time.ToMilliseconds()
    wait_for(lambda: max(ms_of(t) for t in firings(db, "upd")) >= switch + 600, 15, what="firings after the update")
    for fire_time, recs in firings(db, "upd").items():
        if ms_of(fire_time) > switch:
            assert payload(recs[0]) == [3, 3], fire_time
        elif ms_of(fire_time) < switch:
            assert payload(recs[0]) == [2, 2], fire_time
    # the phase is kept: still on the 200 ms grid of the first definition
    assert {(ms_of(t) - first) % 200 for t in firings(db, "upd")} == {0}
    # applying the same definition again is a no-op
    same = client.schedules.update("upd", "t.add", [3, 3], every=0.2, allow_missing=True)
    assert same.update_time == again.update_time
    with pytest.raises(NotFound):
        client.schedules.update("ghost", "t.add", every=1)
    assert client.schedules.update("ghost", "t.add", every=60, allow_missing=True).state == ACTIVE


def test_delete_stops_it_and_end_time_ends_it(client: Client, db: redis.Redis) -> None:
    client.schedules.create("witness", "t.add", [0, 0], every=0.1)
    client.schedules.create("doomed", "t.add", [1, 1], every=0.1)
    end = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=0.6)
    client.schedules.create("ending", "t.add", [2, 2], every=0.1, end=end)
    wait_for(lambda: len(firings(db, "doomed")) >= 2, 15, what="doomed firing")
    client.schedules.delete("doomed")
    doomed = len(firings(db, "doomed"))
    wait_for(lambda: client.schedules.get("ending").state == ENDED, 15, what="the end time to pass")
    ended = client.schedules.get("ending")
    assert not ended.HasField("next_fire_time") and ended.fire_count >= 3
    wait_for(fired_more(client, "witness", 8), 15, what="the witness to fire 8 more times")
    assert len(firings(db, "doomed")) == doomed
    end_ms = int(end.timestamp() * 1000)
    ending = sorted(ms_of(t) for t in firings(db, "ending"))
    assert len(ending) == ended.fire_count and ending[-1] <= end_ms < ending[-1] + 100
    with pytest.raises(NotFound):
        client.schedules.get("doomed")
    assert [s.id for s in client.schedules.list()] == ["ending", "witness"]


# -- bad input: INVALID_ARGUMENT naming the field, nothing written --------------------------------


def test_bad_schedules_are_refused_naming_the_field(scheduler: str, db: redis.Redis) -> None:
    t = task_pb2.TaskSpec(name="t.add")
    every = Duration(seconds=1)
    cron = pb.CronTrigger
    cases: list[tuple[pb.Schedule, str]] = [
        (pb.Schedule(id="c", cron=cron(expression="*/5 * * *"), template=t), "schedule.cron.expression"),
        (pb.Schedule(id="c", cron=cron(expression="0 25 * * *"), template=t), "schedule.cron.expression"),
        (pb.Schedule(id="c", cron=cron(expression="0 0 30 2 *"), template=t), "schedule.cron.expression"),
        (pb.Schedule(id="c", cron=cron(expression="* * * * *", time_zone="Europe/Atlantis"), template=t),
         "schedule.cron.time_zone"),
        (pb.Schedule(id="c", interval=Duration(seconds=0), template=t), "schedule.interval"),
        (pb.Schedule(id="c", interval=Duration(seconds=-1), template=t), "schedule.interval"),
        (pb.Schedule(id="c", template=t), "schedule.trigger"),
        (pb.Schedule(id="bad id", interval=every, template=t), "schedule.id"),
        (pb.Schedule(id="c", interval=every), "schedule.template"),
        (pb.Schedule(id="c", interval=every, template=task_pb2.TaskSpec(name="t.add", priority=12)),
         "schedule.template.priority"),
        (pb.Schedule(id="c", interval=every, template=task_pb2.TaskSpec(name="bad name")), "schedule.template.name"),
        (pb.Schedule(id="c", interval=every, template=task_pb2.TaskSpec(name="t.add", queue="a/b")),
         "schedule.template.queue"),
        (pb.Schedule(id="c", interval=every, template=task_pb2.TaskSpec(name="t.add", payload=b"x" * (1 << 20 + 1))),
         "schedule.template.payload"),
        (pb.Schedule(id="c", interval=every, template=task_pb2.TaskSpec(name="t.add", timeout=Duration(seconds=-1))),
         "schedule.template.timeout"),
        (pb.Schedule(id="c", interval=every, template=task_pb2.TaskSpec(name="t.add", idempotency_key="k")),
         "schedule.template.idempotency_key"),
        (pb.Schedule(id="c", interval=every, template=t, start_time=Timestamp(seconds=5),
                     end_time=Timestamp(seconds=4)), "schedule.end_time"),
    ]
    with grpc.insecure_channel(scheduler) as channel:
        stub = pb_grpc.ScheduleServiceStub(channel)
        stub.CreateSchedule(pb.CreateScheduleRequest(schedule=pb.Schedule(id="ok", interval=Duration(seconds=3600),
                                                                          template=t)), timeout=10)
        for schedule, field in cases:
            expect_invalid(db, lambda s=schedule: stub.CreateSchedule(pb.CreateScheduleRequest(schedule=s),
                                                                      timeout=10), field)
            expect_invalid(db, lambda s=schedule: stub.UpdateSchedule(
                pb.UpdateScheduleRequest(schedule=s, allow_missing=True), timeout=10), field)
        bad_ok = pb.Schedule(id="ok", cron=cron(expression="* * * * *", time_zone="Nowhere/Land"), template=t)
        expect_invalid(db, lambda: stub.UpdateSchedule(pb.UpdateScheduleRequest(schedule=bad_ok), timeout=10),
                       "schedule.cron.time_zone")
        expect_invalid(db, lambda: stub.CreateSchedule(pb.CreateScheduleRequest(), timeout=10), "schedule")
        expect_invalid(db, lambda: stub.GetSchedule(pb.GetScheduleRequest(schedule_id=""), timeout=10),
                       "schedule_id")
        expect_invalid(db, lambda: stub.PauseSchedule(pb.PauseScheduleRequest(schedule_id="x" * 200), timeout=10),
                       "schedule_id")
        expect_invalid(db, lambda: stub.ListSchedules(pb.ListSchedulesRequest(page_size=5000), timeout=10),
                       "page_size")
        assert stub.GetSchedule(pb.GetScheduleRequest(schedule_id="ok"), timeout=10).schedule.HasField("interval")


def snapshot(db: redis.Redis) -> dict[bytes, bytes | None]:
    """Every key's serialized value (the beat lease is renewed with PEXPIRE, which keeps its value)."""
    return {k: db.dump(k) for k in db.scan_iter(count=1000)}


def expect_invalid(db: redis.Redis, call: Callable[[], Any], field: str) -> None:
    before = snapshot(db)
    with pytest.raises(grpc.RpcError) as info:
        call()
    err = info.value
    details = err.details() or ""
    assert err.code() == INVALID, f"{field}: expected INVALID_ARGUMENT, got {err.code().name}: {details}"
    assert re.search(re.escape(field) + r"(?![\w.\[])", details), f"{field!r} not named in {details!r}"
    assert snapshot(db) == before, f"a refused call wrote to Redis ({field}: {details})"


def test_schedules_page_in_id_order(scheduler: str, client: Client) -> None:
    ids = [f"s{i:03d}" for i in range(250)]
    for i in ids:
        client.schedules.create(i, "t.add", every=3600)
    assert [s.id for s in client.schedules.list()] == ids  # 1000 per page: one page
    with grpc.insecure_channel(scheduler) as channel:
        stub = pb_grpc.ScheduleServiceStub(channel)
        seen, token = [], ""
        while True:
            page = stub.ListSchedules(pb.ListSchedulesRequest(page_size=100, page_token=token), timeout=10)
            seen += [s.id for s in page.schedules]
            token = page.next_page_token
            if not token:
                break
    assert seen == ids


# -- an injected clock: cron across DST, months of downtime, without waiting ----------------------


def ms(text: str) -> int:
    return int(dt.datetime.fromisoformat(text).timestamp() * 1000)


def utc(ms_: int) -> str:
    return dt.datetime.fromtimestamp(ms_ / 1000, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def test_cron_in_berlin_across_dst_and_downtime_with_an_injected_clock(redis_url: str, db: redis.Redis) -> None:
    """"30 2 * * *" in Europe/Berlin through both 2026 transitions, with seven months of beat
    downtime in between: fire instants as croniter documents them, one catch-up firing for
    the FIRE_ONCE schedule and none for the SKIP one. Real Redis, real Lua, no waiting."""
    now = [ms("2026-03-27T12:00:00+01:00")]
    berlin = pb.Schedule(id="berlin", cron=pb.CronTrigger(expression="30 2 * * *", time_zone="Europe/Berlin"),
                         template=task_pb2.TaskSpec(name="t.add", payload=b'{"args": [1, 2]}'))
    weekly = pb.Schedule(id="weekly", interval=Duration(seconds=7 * 86400), catchup=pb.CATCHUP_POLICY_SKIP,
                         template=task_pb2.TaskSpec(name="t.add"))

    async def scenario() -> tuple[pb.Schedule, pb.Schedule]:
        conn = async_client(redis_url)
        core = Core(SchedulerConfig(redis_url=redis_url, scheduler_id="clocked"), conn, clock=lambda: now[0])
        try:
            await core.beat.try_lead()
            assert core.beat.is_leader
            for s in (berlin, weekly):
                await core.beat.create(core.beat.check(s))

            async def run_until(stop_ms: int) -> None:
                while True:
                    nxt = await core.beat.fire_due()
                    assert nxt is not None
                    if nxt > stop_ms:
                        return
                    now[0] = nxt + 20  # the leader wakes 20 ms after each fire time

            await run_until(ms("2026-03-31T12:00:00+02:00"))
            now[0] = ms("2026-10-23T12:00:00+02:00")  # no leader from April until now
            await run_until(ms("2026-10-26T12:00:00+01:00"))
            return (to_schedule(await core.beat.get("berlin")), to_schedule(await core.beat.get("weekly")))
        finally:
            await core.beat.close()
            await core.store.aclose()
            await conn.aclose()

    got_berlin, got_weekly = asyncio.run(scenario())
    fired = firings(db, "berlin")
    assert all(len(recs) == 1 for recs in fired.values())
    spring = ["2026-03-28T01:30:00.000Z",  # 02:30 CET
              "2026-03-29T01:00:00.000Z",  # 02:30 does not exist: 03:00 CEST, the end of the gap
              "2026-03-30T00:30:00.000Z", "2026-03-31T00:30:00.000Z"]  # 02:30 CEST
    catch_up = ["2026-04-01T00:30:00.000Z"]  # FIRE_ONCE: the earliest missed fire time stands for all
    autumn = ["2026-10-24T00:30:00.000Z", "2026-10-25T00:30:00.000Z",  # 02:30 CEST
              "2026-10-25T01:30:00.000Z",  # 02:30 again, now CET: the repeated hour fires too
              "2026-10-26T01:30:00.000Z"]
    assert sorted(fired) == spring + catch_up + autumn
    # ... which is what croniter itself yields for these dates
    berlin_tz = ZoneInfo("Europe/Berlin")
    for start, expected in ((dt.datetime(2026, 3, 27, 12, tzinfo=berlin_tz), spring),
                            (dt.datetime(2026, 10, 23, 12, tzinfo=berlin_tz), autumn)):
        it = croniter("30 2 * * *", start)
        assert [utc(int(it.get_next(dt.datetime).timestamp() * 1000)) for _ in range(4)] == expected
    # Apr 1 .. Oct 23 (206 fire times) passed without a leader; one of them fired
    assert (got_berlin.fire_count, got_berlin.missed_count) == (9, 205)
    assert got_berlin.last_fire_time.ToMilliseconds() == ms_of(autumn[-1])
    # the weekly SKIP schedule (first due Apr 3 11:00Z) dropped its 29 missed weeks and fired on time after
    assert sorted(firings(db, "weekly")) == ["2026-10-23T11:00:00.000Z"]
    assert (got_weekly.fire_count, got_weekly.missed_count) == (1, 29)


def test_a_firing_the_submit_path_refuses_is_recorded_not_lost_silently(redis_url: str, db: redis.Redis) -> None:
    """A template saved under one replica's limits that another replica's limits refuse: the
    firing is counted as missed with the reason in last_error, and the schedule moves on."""
    now = [ms("2026-06-01T00:00:00+00:00")]
    big = pb.Schedule(id="big", interval=Duration(seconds=60),
                      template=task_pb2.TaskSpec(name="t.add", payload=b'{"args": [' + b"1, " * 100 + b"1]}"))

    async def scenario() -> pb.Schedule:
        conn = async_client(redis_url)
        roomy = Core(SchedulerConfig(redis_url=redis_url, scheduler_id="roomy"), conn, clock=lambda: now[0])
        strict = Core(SchedulerConfig(redis_url=redis_url, scheduler_id="strict", limits=Limits(max_payload_bytes=64)),
                      conn, clock=lambda: now[0])
        try:
            await roomy.beat.create(roomy.beat.check(big))
            await strict.beat.try_lead()
            now[0] += 60_000
            nxt = await strict.beat.fire_due()
            assert nxt == now[0] + 60_000
            return to_schedule(await strict.beat.get("big"))
        finally:
            await strict.beat.close()
            for c in (roomy, strict):
                await c.store.aclose()
            await conn.aclose()

    got = asyncio.run(scenario())
    assert (got.fire_count, got.missed_count, got.state) == (0, 1, ACTIVE)
    assert got.last_error == f"firings[0].payload: is {len(big.template.payload)} bytes, over the limit of 64"
    assert firings(db, "big") == {}
