"""How the dashboard shows payloads and results: JSON pretty-printed, binary as size + hex head."""

from __future__ import annotations

import json

from conveyor_dashboard.payloads import HEX_HEAD, show_bytes, show_call
from conveyor_dashboard.render import trace_id


def test_a_json_call_is_split_into_pretty_args_and_kwargs() -> None:
    args, kwargs = show_call(json.dumps({"args": [1, "two"], "kwargs": {"b": {"c": 3}}}).encode())
    assert args.kind == kwargs.kind == "json"
    assert json.loads(args.text) == [1, "two"] and "\n" in args.text
    assert json.loads(kwargs.text) == {"b": {"c": 3}} and '  "b": {' in kwargs.text


def test_binary_shows_its_size_and_a_hex_head_only() -> None:
    data = bytes(range(256)) * 4
    shown = show_bytes(data, "application/octet-stream")
    assert shown.kind == "binary" and shown.size == 1024
    assert shown.text.startswith("1,024 bytes: 00 01 02 03")
    assert f"{HEX_HEAD - 1:02x}" in shown.text and f" {HEX_HEAD:02x} " not in shown.text.split("…")[0]
    assert "(+960 bytes)" in shown.text


def test_bytes_that_claim_json_but_do_not_parse_are_binary() -> None:
    assert show_bytes(b"\xff\xfe{not json", "application/json").kind == "binary"
    args, kwargs = show_call(b"\x00\x01\x02", "application/octet-stream")
    assert args.kind == "binary" and args.text == "3 bytes: 00 01 02" and kwargs.kind == "empty"
    assert show_bytes(b"", "").kind == "empty"


def test_a_json_result_that_is_not_a_call_is_shown_whole() -> None:
    assert json.loads(show_bytes(b'{"x": [1, 2]}').text) == {"x": [1, 2]}
    args, _ = show_call(b"[1, 2]")
    assert json.loads(args.text) == [1, 2]


def test_trace_id_comes_from_a_w3c_traceparent() -> None:
    assert trace_id({"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}) == \
        "4bf92f3577b34da6a3ce929d0e0e4736"
    assert trace_id({"traceparent": "garbage"}) is None and trace_id({}) is None
