"""Pure logic of the operations surface: percentiles from log buckets, windows, cursors,
the merge order of a multi-queue page."""

from __future__ import annotations

import math
import re
import struct
from pathlib import Path

import pytest

from conveyor.v1 import admin_service_pb2 as pb
from conveyor_scheduler.errors import InvalidArgument
from conveyor_scheduler.keys import HIST_BUCKETS, RUN_SLOT, STAT_BUCKET_MS, STAT_COUNTERS, STAT_RETENTION_MS, WAIT_SLOT
from conveyor_scheduler.queue_stats import (
    HISTORY_MINUTES,
    ZEROS,
    added,
    bucket_ms,
    by_minute,
    counters,
    history_buckets,
    minute_points,
    percentile_ms,
    unserved,
    window,
)
from conveyor_scheduler.task_search import Position, decode_cursor, encode_cursor, parse_filter


def lua_bucket(ms: float) -> int:
    """lib.lua's stat_ms, in Python."""
    return 0 if ms < 1 else math.floor(math.log(ms) / (math.log(2) / 4)) + 1


@pytest.mark.parametrize("ms", [1, 1.5, 3, 10, 99, 250, 1000, 12_345, 3_600_000])
def test_a_bucket_reports_within_a_tenth_of_its_values(ms: float) -> None:
    assert abs(bucket_ms(lua_bucket(ms)) - ms) / ms < 0.1


def test_percentiles_walk_the_buckets_in_order() -> None:
    values = [5] * 50 + [100] * 45 + [2000] * 5
    hist: dict[int, int] = {}
    for v in values:
        hist[lua_bucket(v)] = hist.get(lua_bucket(v), 0) + 1
    assert percentile_ms(hist, 0.5) == pytest.approx(5, rel=0.1)
    assert percentile_ms(hist, 0.95) == pytest.approx(100, rel=0.1)
    assert percentile_ms(hist, 0.96) == pytest.approx(2000, rel=0.1)
    assert percentile_ms({}, 0.5) is None
    assert percentile_ms({0: 3}, 0.5) == 0.5


def bucket(**counts: int) -> tuple[int, ...]:
    """An activity bucket as lib.lua's BITFIELD writes it: counters by name, w<K>/r<K> for histograms."""
    slots = [0] * (RUN_SLOT + HIST_BUCKETS)
    for name, n in counts.items():
        if name[0] in "wr" and name[1:].isdigit():
            slots[(WAIT_SLOT if name[0] == "w" else RUN_SLOT) + int(name[1:])] = n
        else:
            slots[STAT_COUNTERS.index(name)] = n
    return counters(struct.pack(f">{len(slots)}I", *slots))


def test_a_window_adds_its_buckets_only() -> None:
    now = 1_700_000_004_000  # 4 s into a bucket
    buckets = [bucket(submitted=2, w10=2, r20=1)] + [bucket(submitted=1)] * 89
    one = window(buckets, 1, now)
    assert (one.minutes, one.submitted) == (1, 2 + 5)
    assert one.covered.ToMilliseconds() == 50_000 + 4_000
    assert one.wait_p50.ToNanoseconds() == round(bucket_ms(10) * 1e6)
    assert one.run_p95.ToNanoseconds() == round(bucket_ms(20) * 1e6)
    assert window(buckets, 15, now).submitted == 2 + 89
    assert not window([counters(None)] * 90, 5, now).HasField("wait_p50")


def test_a_window_starts_at_its_oldest_bucket() -> None:
    now = 1_700_000_004_000
    one = window([ZEROS] * 90, 1, now)
    assert one.start.ToMilliseconds() == now - 4_000 - 50_000


def test_history_reads_whole_wall_clock_minutes_oldest_first() -> None:
    now = 1_700_000_045_500  # 5.5 s into a minute
    minute = now // 60_000
    numbers = history_buckets(3, now)
    assert len(numbers) == 18
    assert numbers[0] * STAT_BUCKET_MS == (minute - 2) * 60_000
    assert numbers[-1] == (minute + 1) * 6 - 1  # the current minute's last bucket, still to come
    buckets = [ZEROS] * 18
    buckets[0] = bucket(succeeded=3, w4=3)  # the oldest minute's first 10 s
    buckets[5] = bucket(succeeded=1, failed=1, w40=2)  # its last 10 s
    buckets[12 + (now % 60_000) // STAT_BUCKET_MS] = bucket(submitted=7)  # now
    points = minute_points(by_minute(buckets), now)
    assert [p.minutes for p in points] == [1, 1, 1]
    assert [p.start.ToMilliseconds() for p in points] == [(minute - 2 + i) * 60_000 for i in range(3)]
    assert [p.covered.ToMilliseconds() for p in points] == [60_000, 60_000, now % 60_000]
    assert (points[0].succeeded, points[0].failed, points[2].submitted) == (4, 1, 7)
    assert points[0].wait_p95.ToNanoseconds() == round(bucket_ms(40) * 1e6)
    assert points[0].wait_p50.ToNanoseconds() == round(bucket_ms(4) * 1e6)
    assert not points[1].HasField("wait_p50") and points[1].succeeded == 0


def test_added_buckets_merge_their_histograms_and_skip_missing_ones() -> None:
    a, b = bucket(succeeded=1, w10=9), bucket(succeeded=2, w30=1)
    assert added([]) is ZEROS and added([ZEROS, a, ZEROS]) is a
    total = added([a, b])
    assert total[STAT_COUNTERS.index("succeeded")] == 3
    assert (total[WAIT_SLOT + 10], total[WAIT_SLOT + 30]) == (9, 1)


def test_the_buckets_outlive_the_hour_history_reads() -> None:
    lib = (Path(__file__).resolve().parents[2] / "services/scheduler/src/conveyor_scheduler/lua/lib.lua").read_text()
    assert f"redis.call('PEXPIRE', key, {STAT_RETENTION_MS})" in lib
    assert (HISTORY_MINUTES * 6 + 1) * STAT_BUCKET_MS <= STAT_RETENTION_MS


def test_counters_read_short_and_missing_strings_as_zeros() -> None:
    assert counters(None) == (0,) * (RUN_SLOT + HIST_BUCKETS)
    assert counters(b"\x00\x00\x00\x07")[:2] == (7, 0)  # BITFIELD grows the string only as far as it wrote


def test_lib_lua_uses_the_slots_of_keys_py() -> None:
    lib = (Path(__file__).resolve().parents[2] / "services/scheduler/src/conveyor_scheduler/lua/lib.lua").read_text()
    names = re.search(r"local SUBMITTED, (.*) = ([\d, ]+)\n", lib)
    assert names, "lib.lua's slot constants"
    values = [int(v) for v in names.group(2).split(",")]
    assert values == list(range(len(STAT_COUNTERS)))
    assert f"local WAIT_SLOT, RUN_SLOT, HIST_BUCKETS = {WAIT_SLOT}, {RUN_SLOT}, {HIST_BUCKETS}" in lib


def test_unserved_names_are_those_no_registered_worker_declares() -> None:
    w1 = pb.Worker(worker_id="a", queues=["q"], task_names=["x"])
    w2 = pb.Worker(worker_id="b", queues=["other"], task_names=[])
    assert unserved(["x", "y"], "q", [w1, w2]) == ["y"]
    assert unserved(["x", "y"], "q", [w1, pb.Worker(worker_id="c", queues=["q"])]) == []  # one takes any name
    assert unserved(["y"], "q", []) == ["y"]


def test_a_cursor_round_trips_and_is_bound_to_its_filter() -> None:
    query = parse_filter(pb.TaskFilter(queue="q", states=[5]), ["q"])
    other = parse_filter(pb.TaskFilter(queue="q", states=[4]), ["q"])
    at = Position(1_700_000_000_000, 7, 12, "q")
    cursor = encode_cursor(query, at)
    assert decode_cursor(query, cursor) == at
    for bad in ("", "x", cursor[:-1], cursor.upper(), "MXxhYmN8MS0wfHF8eHg"):
        with pytest.raises(InvalidArgument) as info:
            decode_cursor(query, bad)
        assert info.value.field == "cursor"
    with pytest.raises(InvalidArgument, match="another filter"):
        decode_cursor(other, cursor)


def test_positions_order_by_entry_then_index_then_queue() -> None:
    assert (Position(2, 0, 1, "a") > Position(1, 9, 1, "z") > Position(1, 9, 1, "b") > Position(1, 8, 500, "z")
            > Position(1, 8, 499, "z"))
