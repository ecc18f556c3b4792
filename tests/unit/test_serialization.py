"""conveyor.serialization (the JSON call/result rule) and conveyor.options.build_spec."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from conveyor.options import SubmitOptions, build_spec
from conveyor.serialization import JSON, decode_call, decode_result, encode_call, encode_result

# -- calls ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("args", "kwargs"), [
    ((), None),
    ((1, 2), {}),
    ([1, "two", [3.5, None], {"four": True}], {"x": {"nested": [1]}, "ünï": "cødé"}),
    ((), {"only": "kwargs"}),
])
def test_call_round_trip(args: tuple[object, ...] | list[object], kwargs: dict[str, object] | None) -> None:
    payload = encode_call(args, kwargs)
    assert isinstance(payload, bytes)
    assert decode_call(payload) == (list(args), dict(kwargs or {}))
    assert decode_call(payload, "") == (list(args), dict(kwargs or {}))


def test_call_wire_format_is_compact_json() -> None:
    assert encode_call((1, "a"), {"k": None}) == b'{"args":[1,"a"],"kwargs":{"k":null}}'
    assert encode_call() == b'{"args":[],"kwargs":{}}'
    assert json.loads(encode_call((1,))) == {"args": [1], "kwargs": {}}


def test_empty_payload_is_no_arguments() -> None:
    assert decode_call(b"") == ([], {})


def test_missing_keys_default() -> None:
    assert decode_call(b"{}") == ([], {})
    assert decode_call(b'{"args":[1]}') == ([1], {})
    assert decode_call(b'{"kwargs":{"a":1}}') == ([], {"a": 1})


def test_encode_call_rejects_unserializable() -> None:
    with pytest.raises(TypeError):
        encode_call((object(),))


@pytest.mark.parametrize("payload", [
    b"[1, 2]", b'"text"', b"42", b"null",  # not an object
    b'{"args": {"a": 1}}', b'{"args": "x"}', b'{"kwargs": [1]}', b'{"args": null}',  # wrong shapes
    b"not json", b"{", b"\xff\xfe",  # not JSON at all
])
def test_decode_call_rejects_bad_payloads(payload: bytes) -> None:
    with pytest.raises(ValueError):  # json.JSONDecodeError and UnicodeDecodeError are ValueErrors too
        decode_call(payload)


def test_decode_call_refuses_other_content_types() -> None:
    with pytest.raises(ValueError, match="application/msgpack"):
        decode_call(encode_call((1,)), "application/msgpack")


# -- results --------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [None, 0, 1.5, "s", [1, [2]], {"a": {"b": None}}, True])
def test_result_round_trip(value: object) -> None:
    assert decode_result(encode_result(value)) == value
    assert decode_result(encode_result(value), JSON) == value


def test_result_edge_cases() -> None:
    assert decode_result(b"") is None
    assert decode_result(b"\x00raw", "application/octet-stream") == b"\x00raw"
    with pytest.raises(ValueError):
        decode_result(b"not json")


# -- build_spec -----------------------------------------------------------------------------


def test_build_spec_defaults() -> None:
    spec = build_spec("t.add", (1, 2), None, SubmitOptions())
    assert spec.name == "t.add"
    assert decode_call(spec.payload) == ([1, 2], {})
    assert spec.queue == ""
    assert spec.priority == 0
    assert spec.content_type == ""
    for field in ("eta", "countdown", "expires_at", "timeout", "retry"):
        assert not spec.HasField(field), field
    assert spec.idempotency_key == ""
    assert dict(spec.headers) == {}


def test_build_spec_sets_every_field() -> None:
    eta = dt.datetime(2030, 1, 2, 3, 4, 5, 678000, tzinfo=dt.UTC)
    expires = dt.datetime(2030, 1, 2, 4, 0, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    opts = SubmitOptions(queue="billing", priority=9, eta=eta, expires=expires, timeout=dt.timedelta(minutes=2),
                         max_retries=3, retry_backoff=0.5, retry_backoff_max=30, idempotency_key="order-1",
                         headers={"traceparent": "00-1-2-01"})
    spec = build_spec("billing.charge", [], {"amount": 10}, opts)
    assert spec.queue == "billing"
    assert spec.priority == 9
    assert spec.eta.ToDatetime(tzinfo=dt.UTC) == eta
    assert spec.expires_at.ToDatetime(tzinfo=dt.UTC) == expires.astimezone(dt.UTC)
    assert spec.timeout.ToMilliseconds() == 120_000
    assert spec.retry.max_retries == 3
    assert spec.retry.initial_backoff.ToMilliseconds() == 500
    assert spec.retry.max_backoff.ToMilliseconds() == 30_000
    assert spec.idempotency_key == "order-1"
    assert dict(spec.headers) == {"traceparent": "00-1-2-01"}
    assert decode_call(spec.payload) == ([], {"amount": 10})


def test_build_spec_countdown_and_relative_expiry() -> None:
    before = dt.datetime.now(dt.UTC)
    spec = build_spec("t", (), None, SubmitOptions(countdown=1.5, expires=dt.timedelta(seconds=60)))
    after = dt.datetime.now(dt.UTC)
    assert spec.countdown.ToMilliseconds() == 1_500
    assert not spec.HasField("eta")
    expires_at = spec.expires_at.ToDatetime(tzinfo=dt.UTC)
    assert before + dt.timedelta(seconds=59) <= expires_at <= after + dt.timedelta(seconds=61)


def test_build_spec_priority_zero_is_kept() -> None:
    assert build_spec("t", (), None, SubmitOptions(priority=0)).priority == 0


def test_build_spec_backoff_needs_max_retries() -> None:
    spec = build_spec("t", (), None, SubmitOptions(retry_backoff=1, retry_backoff_max=2))
    assert not spec.HasField("retry")


@pytest.mark.parametrize("field", ["eta", "expires"])
def test_build_spec_rejects_naive_datetimes(field: str) -> None:
    naive = dt.datetime(2030, 1, 1, 12, 0)
    with pytest.raises(ValueError, match="timezone-aware"):
        build_spec("t", (), None, SubmitOptions(**{field: naive}))


def test_merged_ignores_none() -> None:
    base = SubmitOptions(queue="a", priority=3)
    merged = base.merged(queue=None, priority=5, timeout=None)
    assert (merged.queue, merged.priority, merged.timeout) == ("a", 5, None)
    assert base.priority == 3


@pytest.mark.parametrize("seconds", [1.001, 1.005, 1.039, dt.timedelta(milliseconds=1001)], ids=str)
def test_build_spec_durations_are_not_truncated(seconds: float | dt.timedelta) -> None:
    # 271 of the 9,999 whole-millisecond values from 0.001 s to 9.999 s lose a millisecond
    spec = build_spec("t", (), None, SubmitOptions(timeout=seconds, countdown=seconds))
    expected = round((seconds.total_seconds() if isinstance(seconds, dt.timedelta) else seconds) * 1000)
    # the scheduler reads durations as whole milliseconds (seconds*1000 + nanos//1e6)
    assert spec.timeout.ToMilliseconds() == expected
    assert spec.countdown.ToMilliseconds() == expected
