"""The CLI's pure helpers: time options, and how durations and rates are shown."""

from __future__ import annotations

import datetime as dt

import pytest
from rich.console import Console

from conveyor import QueueInfo
from conveyor.cli_common import parse_duration, parse_when, rate_text, seconds_text
from conveyor.cli_queues import queue_json, queues_table
from conveyor.v1 import admin_service_pb2 as pb

NOW = dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.UTC)


@pytest.mark.parametrize(("text", "seconds"), [
    ("30s", 30), ("15m", 900), ("1h", 3600), ("2d", 172800), ("1w", 604800), ("1h30m", 5400), ("1.5h", 5400),
    (" 10S ", 10), ("0s", 0),
])
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "5", "5x", "h", "-1h", "1h 30m", "1e3s", "one hour"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(text)


def test_when_is_a_duration_ago_or_an_iso_time_in_utc_unless_it_says_otherwise() -> None:
    assert parse_when("1h", NOW) == NOW - dt.timedelta(hours=1)
    assert parse_when("2024-05-01T10:00:00Z", NOW) == dt.datetime(2024, 5, 1, 10, tzinfo=dt.UTC)
    assert parse_when("2024-05-01T10:00:00", NOW) == dt.datetime(2024, 5, 1, 10, tzinfo=dt.UTC)
    assert parse_when("2024-05-01T12:00:00+02:00", NOW) == dt.datetime(2024, 5, 1, 10, tzinfo=dt.UTC)
    assert parse_when("2024-05-01", NOW) == dt.datetime(2024, 5, 1, tzinfo=dt.UTC)
    with pytest.raises(ValueError, match="neither a duration"):
        parse_when("yesterday", NOW)


@pytest.mark.parametrize(("seconds", "text"), [
    (None, "-"), (0.0, "0.0ms"), (0.0042, "4.2ms"), (0.25, "250ms"), (4.25, "4.2s"), (59.9, "59.9s"),
    (185, "3m05s"), (7800, "2h10m"), (3 * 86400 + 4 * 3600 + 59, "3d04h"),
])
def test_seconds_text(seconds: float | None, text: str) -> None:
    assert seconds_text(seconds) == text


@pytest.mark.parametrize(("rate", "text"), [
    (0.0, "0"), (0.004, "<0.01"), (1 / 60, "0.02"), (2.5, "2.50"), (12.34, "12.3"), (840.2, "840"),
])
def test_rate_text(rate: float, text: str) -> None:
    assert rate_text(rate) == text


def _queue() -> QueueInfo:
    stats = pb.QueueStats(queue="emails", queued_by_priority=[4, 1] + [0] * 8, queued=5, scheduled=2, active=1,
                          paused=True, unserved_names=["t.nobody"])
    stats.oldest_queued_age.FromSeconds(185)
    for minutes in (1, 5, 15):
        w = stats.windows.add(minutes=minutes, submitted=30 * minutes, succeeded=12 * minutes, failed=0)
        w.covered.FromSeconds(60 * minutes)
        w.run_p95.FromMilliseconds(250)
    return QueueInfo.from_proto(stats)


def test_queues_table_shows_depths_last_minute_rates_and_p95() -> None:
    out = Console(width=200, record=True)
    out.print(queues_table([_queue()], None))
    text = out.export_text()
    row = next(line for line in text.splitlines() if "emails" in line).replace("│", " ").split()
    assert row == ["emails", "yes", "5", "2", "1", "0", "3m05s", "0.50", "0.20", "0", "-", "250ms", "t.nobody"]
    assert "rates and p95 over the last 1 minute" in text


def test_queue_json_keys_windows_by_minutes_in_seconds() -> None:
    doc = queue_json(_queue())
    assert (doc["queue"], doc["paused"], doc["queued_by_priority"][:2], doc["oldest_queued_age"]) == (
        "emails", True, [4, 1], 185.0)
    assert list(doc["windows"]) == ["1", "5", "15"]
    assert doc["windows"]["5"]["covered"] == 300.0 and doc["windows"]["5"]["submitted"] == 150
    assert (doc["windows"]["1"]["run_p95"], doc["windows"]["1"]["wait_p95"]) == (0.25, None)
