"""Beat time arithmetic with an injected clock: cron across daylight-saving transitions,
interval anchoring, the catch-up policies, end times, and definition validation.

The clock is just the `now_ms` handed to plan_firings, so days and months pass instantly.
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from croniter import croniter
from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp

from conveyor.v1 import schedule_service_pb2 as pb
from conveyor.v1 import task_pb2
from conveyor_scheduler.errors import InvalidArgument
from conveyor_scheduler.schedules import (
    FIRE_TIME_HEADER,
    SCHEDULE_HEADER,
    ScheduleDef,
    check_schedule,
    fire_key,
    firing_spec,
    load_schedule,
    plan_firings,
)

BERLIN = ZoneInfo("Europe/Berlin")
SECOND, MINUTE, HOUR, DAY = 1000, 60_000, 3_600_000, 86_400_000
GRACE = 1000


def ms(text: str) -> int:
    return int(dt.datetime.fromisoformat(text).timestamp() * 1000)


def utc(ms_: int) -> str:
    return dt.datetime.fromtimestamp(ms_ / 1000, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def cron_def(expr: str, tz: str = "", **fields: object) -> ScheduleDef:
    msg = pb.Schedule(id="s", cron=pb.CronTrigger(expression=expr, time_zone=tz),
                      template=task_pb2.TaskSpec(name="t.x"), **fields)
    return check_schedule(msg, "schedule", now_ms=ms("2026-01-01T00:00:00+00:00"))


def interval_def(every_ms: int, **fields: object) -> ScheduleDef:
    msg = pb.Schedule(id="s", interval=Duration(seconds=every_ms // 1000, nanos=every_ms % 1000 * 1_000_000),
                      template=task_pb2.TaskSpec(name="t.x"), **fields)
    return check_schedule(msg, "schedule", now_ms=0)


def run_leader(d: ScheduleDef, start_ms: int, until_ms: int, *, anchor: int = 0, lateness: int = 0) -> list[int]:
    """Drives the firing plan with an injected clock: the leader wakes at every next fire
    time (plus `lateness`) and fires what the plan says. Returns the fire times submitted."""
    nxt, last, fired = d.next_from(anchor, start_ms), -1, []
    while nxt is not None and nxt <= until_ms:
        plan = plan_firings(d, anchor_ms=anchor, next_ms=nxt, last_ms=last, now_ms=nxt + lateness, grace_ms=GRACE)
        assert plan.missed == 0
        fired += plan.fires
        last, nxt = plan.fires[-1], plan.next_ms
    return fired


# -- cron across daylight-saving transitions ------------------------------------------------


def test_daily_cron_in_berlin_across_the_spring_forward() -> None:
    # 2026-03-29 02:00 CET -> 03:00 CEST: 02:30 does not exist that night. croniter fires at the
    # end of the gap (03:00 CEST), as its test_dst_issue90 documents for Paris.
    d = cron_def("30 2 * * *", "Europe/Berlin")
    fired = run_leader(d, ms("2026-03-27T12:00:00+01:00"), ms("2026-03-31T12:00:00+02:00"), lateness=5)
    assert [utc(t) for t in fired] == [
        "2026-03-28T01:30:00Z",  # 02:30 CET
        "2026-03-29T01:00:00Z",  # 03:00 CEST, the end of the gap
        "2026-03-30T00:30:00Z",  # 02:30 CEST
        "2026-03-31T00:30:00Z",
    ]
    assert fired == croniter_times("30 2 * * *", dt.datetime(2026, 3, 27, 12, tzinfo=BERLIN), 4)


def test_daily_cron_in_berlin_across_the_fall_back() -> None:
    # 2026-10-25 03:00 CEST -> 02:00 CET: 02:30 happens twice, and croniter names both instants.
    d = cron_def("30 2 * * *", "Europe/Berlin")
    fired = run_leader(d, ms("2026-10-23T12:00:00+02:00"), ms("2026-10-26T12:00:00+01:00"))
    assert [utc(t) for t in fired] == [
        "2026-10-24T00:30:00Z",  # 02:30 CEST
        "2026-10-25T00:30:00Z",  # 02:30 CEST
        "2026-10-25T01:30:00Z",  # 02:30 CET, the repeated hour
        "2026-10-26T01:30:00Z",  # 02:30 CET
    ]
    assert fired == croniter_times("30 2 * * *", dt.datetime(2026, 10, 23, 12, tzinfo=BERLIN), 4)


def test_hourly_cron_keeps_elapsed_hours_across_both_transitions() -> None:
    d = cron_def("0 * * * *", "Europe/Berlin")
    spring = run_leader(d, ms("2026-03-28T23:30:00+01:00"), ms("2026-03-29T04:00:00+02:00"))
    # 00:00 and 01:00 CET, then 03:00 and 04:00 CEST: the hour that does not exist is not invented
    assert [utc(t) for t in spring] == ["2026-03-28T23:00:00Z", "2026-03-29T00:00:00Z", "2026-03-29T01:00:00Z",
                                        "2026-03-29T02:00:00Z"]
    autumn = run_leader(d, ms("2026-10-25T00:30:00+02:00"), ms("2026-10-25T04:00:00+01:00"))
    # 01:00 CEST, 02:00 CEST, 02:00 CET (the repeated hour), 03:00 and 04:00 CET
    assert [utc(t) for t in autumn] == ["2026-10-24T23:00:00Z", "2026-10-25T00:00:00Z", "2026-10-25T01:00:00Z",
                                        "2026-10-25T02:00:00Z", "2026-10-25T03:00:00Z"]
    assert spring == croniter_times("0 * * * *", dt.datetime(2026, 3, 28, 23, 30, tzinfo=BERLIN), 4)


def test_daily_cron_in_utc_ignores_berlin_dst() -> None:
    fired = run_leader(cron_def("30 2 * * *"), ms("2026-03-27T12:00:00+00:00"), ms("2026-03-30T12:00:00+00:00"))
    assert [utc(t) for t in fired] == ["2026-03-28T02:30:00Z", "2026-03-29T02:30:00Z", "2026-03-30T02:30:00Z"]


def croniter_times(expr: str, start: dt.datetime, count: int) -> list[int]:
    it = croniter(expr, start)
    return [int(it.get_next(dt.datetime).timestamp() * 1000) for _ in range(count)]


def test_six_field_cron_has_seconds_first() -> None:
    d = cron_def("*/15 * * * * *")
    assert d.seconds
    fired = run_leader(d, ms("2026-01-01T00:00:01+00:00"), ms("2026-01-01T00:01:00+00:00"))
    assert [utc(t)[-6:] for t in fired] == ["00:15Z", "00:30Z", "00:45Z", "01:00Z"]


def test_start_and_end_time_bound_cron_firings() -> None:
    start, end = ms("2026-01-01T10:00:00+00:00"), ms("2026-01-01T13:00:00+00:00")
    d = cron_def("0 * * * *", start_time=Timestamp(seconds=start // 1000), end_time=Timestamp(seconds=end // 1000))
    assert d.next_from(0, ms("2026-01-01T00:00:00+00:00")) == start  # nothing before start_time
    fired = run_leader(d, 0, ms("2026-01-02T00:00:00+00:00"))
    assert [utc(t) for t in fired] == [f"2026-01-01T{h}:00:00Z" for h in (10, 11, 12, 13)]  # end is inclusive
    assert d.next_after(0, end) is None


# -- intervals ----------------------------------------------------------------------------


def test_interval_fires_from_its_anchor_and_stops_at_end_time() -> None:
    d = interval_def(7 * DAY, end_time=Timestamp(seconds=(10 * DAY + 40 * 7 * DAY) // 1000))
    anchor = d.anchor(now_ms=10 * DAY)  # no start_time: one interval after creation
    assert anchor == 17 * DAY
    fired = run_leader(d, 10 * DAY, 10**13, anchor=anchor)
    assert fired == [17 * DAY + k * 7 * DAY for k in range(40)]  # 40 weeks in no time, then ended


def test_interval_anchor_survives_updates() -> None:
    d = interval_def(5 * SECOND)
    assert d.anchor(now_ms=1_000_000, stored=990_000) == 990_000  # keep the phase
    assert d.anchor(now_ms=1_000_000, stored=9_000_000) == 1_005_000  # a stale far-future anchor is reset
    started = interval_def(5 * SECOND, start_time=Timestamp(seconds=42))
    assert started.anchor(now_ms=1_000_000, stored=990_000) == 42_000  # start_time wins


# -- catch-up after downtime ------------------------------------------------------------------


@pytest.mark.parametrize("policy", [pb.CATCHUP_POLICY_SKIP, pb.CATCHUP_POLICY_FIRE_ONCE])
def test_weekly_schedule_after_three_weeks_of_downtime(policy: int) -> None:
    d = interval_def(7 * DAY, catchup=policy)
    anchor = 7 * DAY  # fire times 7d, 14d, 21d, ...
    down_from, back_at = 7 * DAY, 28 * DAY + 3 * HOUR  # fired 7d, then no leader until day 28 + 3h
    plan = plan_firings(d, anchor_ms=anchor, next_ms=14 * DAY, last_ms=down_from, now_ms=back_at, grace_ms=GRACE)
    assert plan.next_ms == 35 * DAY
    if policy == pb.CATCHUP_POLICY_SKIP:
        assert (plan.fires, plan.missed) == ([], 3)  # 14d, 21d, 28d dropped (and counted)
    else:
        assert (plan.fires, plan.missed) == ([14 * DAY], 2)  # one firing, keyed by the earliest missed


@pytest.mark.parametrize("policy", [pb.CATCHUP_POLICY_SKIP, pb.CATCHUP_POLICY_FIRE_ONCE])
def test_one_second_schedule_after_a_failover(policy: int) -> None:
    d = interval_def(SECOND, catchup=policy)
    # The old leader fired 100s and died; the new one takes over at 103.4s.
    plan = plan_firings(d, anchor_ms=0, next_ms=101_000, last_ms=100_000, now_ms=103_400, grace_ms=GRACE)
    assert plan.next_ms == 104_000
    if policy == pb.CATCHUP_POLICY_SKIP:
        assert (plan.fires, plan.missed) == ([103_000], 2)  # 101s and 102s dropped; 103s is on time
    else:
        assert (plan.fires, plan.missed) == ([101_000, 103_000], 1)  # 101s stands for 101s and 102s


def test_a_late_but_within_grace_firing_is_on_time_and_nothing_fires_twice() -> None:
    d = interval_def(200, catchup=pb.CATCHUP_POLICY_SKIP)
    plan = plan_firings(d, anchor_ms=0, next_ms=1000, last_ms=800, now_ms=1900, grace_ms=GRACE)
    assert (plan.fires, plan.missed, plan.next_ms) == ([1000, 1200, 1400, 1600, 1800], 0, 2000)
    # A successor that re-plans after the pass was recorded only partly skips what was submitted.
    again = plan_firings(d, anchor_ms=0, next_ms=1000, last_ms=1800, now_ms=1900, grace_ms=GRACE)
    assert (again.fires, again.next_ms) == ([], 2000)
    assert plan_firings(d, anchor_ms=0, next_ms=2000, last_ms=1800, now_ms=1900, grace_ms=GRACE).fires == []


def test_fire_once_after_long_cron_downtime_counts_missed_times() -> None:
    d = cron_def("*/5 * * * *")  # FIRE_ONCE by default
    t0 = ms("2026-05-01T00:00:00+00:00")
    plan = plan_firings(d, anchor_ms=0, next_ms=t0, last_ms=t0 - 5 * MINUTE, now_ms=t0 + 2 * HOUR + 30 * SECOND,
                        grace_ms=GRACE)
    assert plan.fires == [t0]
    assert plan.missed == 24  # 25 fire times in [t0, t0 + 2h] folded into one
    assert plan.next_ms == t0 + 2 * HOUR + 5 * MINUTE


# -- what a firing submits ---------------------------------------------------------------------


def test_firing_spec_carries_the_idempotency_key_and_headers() -> None:
    msg = pb.Schedule(id="nightly", cron=pb.CronTrigger(expression="0 2 * * *", time_zone="Europe/Berlin"),
                      template=task_pb2.TaskSpec(name="reports.build", queue="reports", priority=3,
                                                 headers={"team": "bi"}))
    d = check_schedule(msg, "schedule", now_ms=0)
    spec = firing_spec(d, ms("2026-03-29T01:00:00+00:00"))
    assert spec.idempotency_key == "nightly@2026-03-29T01:00:00.000Z"
    assert fire_key("s", 1_234) == "s@1970-01-01T00:00:01.234Z"
    assert (spec.name, spec.queue, spec.priority) == ("reports.build", "reports", 3)
    assert dict(spec.headers) == {"team": "bi", SCHEDULE_HEADER: "nightly",
                                  FIRE_TIME_HEADER: "2026-03-29T01:00:00.000Z"}
    assert load_schedule(d.blob) == d  # the stored form loads back to the same definition


def test_defaults_are_normalised_in_the_stored_definition() -> None:
    d = cron_def("@Daily")
    assert d.catchup == pb.CATCHUP_POLICY_FIRE_ONCE and d.cron == "@daily"
    stored = pb.Schedule.FromString(d.blob)
    assert stored.catchup == pb.CATCHUP_POLICY_FIRE_ONCE and not stored.HasField("next_fire_time")


# -- validation: INVALID_ARGUMENT naming the field -------------------------------------------------

T = task_pb2.TaskSpec(name="t.x")


@pytest.mark.parametrize(("msg", "field", "words"), [
    (pb.Schedule(id="s", cron=pb.CronTrigger(expression="61 * * * *"), template=T), "schedule.cron.expression",
     "not a valid cron"),
    (pb.Schedule(id="s", cron=pb.CronTrigger(expression="* * * *"), template=T), "schedule.cron.expression",
     "4 fields"),
    (pb.Schedule(id="s", cron=pb.CronTrigger(expression="0 0 0 1 1 * 2030"), template=T), "schedule.cron.expression",
     "7 fields"),
    (pb.Schedule(id="s", cron=pb.CronTrigger(expression="0 0 31 2 *"), template=T), "schedule.cron.expression",
     "can never occur"),
    (pb.Schedule(id="s", cron=pb.CronTrigger(expression="@sometimes"), template=T), "schedule.cron.expression",
     "@hourly"),
    (pb.Schedule(id="s", cron=pb.CronTrigger(expression="", time_zone="UTC"), template=T), "schedule.cron.expression",
     "empty"),
    (pb.Schedule(id="s", cron=pb.CronTrigger(expression="* * * * *", time_zone="Mars/Olympus_Mons"), template=T),
     "schedule.cron.time_zone", "unknown time zone"),
    (pb.Schedule(id="s", cron=pb.CronTrigger(expression="* * * * *", time_zone="../../etc/passwd"), template=T),
     "schedule.cron.time_zone", "not an IANA"),
    (pb.Schedule(id="s", interval=Duration(seconds=0), template=T), "schedule.interval", "positive"),
    (pb.Schedule(id="s", interval=Duration(seconds=-5), template=T), "schedule.interval", "positive"),
    (pb.Schedule(id="s", interval=Duration(nanos=500), template=T), "schedule.interval", "at least 1 ms"),
    (pb.Schedule(id="s", interval=Duration(seconds=1, nanos=1_000_000_000), template=T), "schedule.interval",
     "nanos must be 0 to 999,999,999"),
    (pb.Schedule(id="s", interval=Duration(seconds=1, nanos=-1), template=T), "schedule.interval", "positive"),
    (pb.Schedule(id="s", template=T), "schedule.trigger", "interval or cron"),
    (pb.Schedule(id="", interval=Duration(seconds=1), template=T), "schedule.id", "empty"),
    (pb.Schedule(id="a@b", interval=Duration(seconds=1), template=T), "schedule.id", "may only contain"),
    (pb.Schedule(id="s", interval=Duration(seconds=1)), "schedule.template", "must be set"),
    (pb.Schedule(id="s", interval=Duration(seconds=1), template=task_pb2.TaskSpec(name="t", idempotency_key="k")),
     "schedule.template.idempotency_key", "must not be set"),
    (pb.Schedule(id="s", interval=Duration(seconds=1), template=task_pb2.TaskSpec(name="t", eta=Timestamp(seconds=9))),
     "schedule.template.eta", "must not be set"),
    (pb.Schedule(id="s", interval=Duration(seconds=1), template=T, start_time=Timestamp(seconds=10),
                 end_time=Timestamp(seconds=10)), "schedule.end_time", "after start_time"),
    (pb.Schedule(id="s", interval=Duration(seconds=1), template=T, catchup=7), "schedule.catchup", "unknown"),
])
def test_invalid_definitions_name_the_field(msg: pb.Schedule, field: str, words: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        check_schedule(msg, "schedule", now_ms=ms("2026-01-01T00:00:00+00:00"))
    assert info.value.field == field
    assert words in str(info.value)
