"""Payloads and results shown to people: JSON pretty-printed, anything else as size + hex head."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

JSON = "application/json"
HEX_HEAD = 64


@dataclass(frozen=True)
class Shown:
    kind: str
    """"json", "binary" or "empty"."""
    text: str
    size: int


def show_value(value: Any, size: int) -> Shown:
    return Shown("json", json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True), size)


def show_bytes(data: bytes, content_type: str = JSON) -> Shown:
    """JSON (when the content type allows it and the bytes parse) pretty-printed, else binary."""
    if not data:
        return Shown("empty", "", 0)
    if content_type in ("", JSON) or content_type.endswith("+json"):
        try:
            return show_value(json.loads(data), len(data))
        except (ValueError, UnicodeDecodeError):
            pass
    return binary(data)


def binary(data: bytes) -> Shown:
    head = data[:HEX_HEAD].hex(" ")
    more = f" … (+{len(data) - HEX_HEAD:,} bytes)" if len(data) > HEX_HEAD else ""
    return Shown("binary", f"{len(data):,} bytes: {head}{more}", len(data))


def show_call(payload: bytes, content_type: str = JSON) -> tuple[Shown, Shown]:
    """A task's (args, kwargs): the payload rule is {"args": [...], "kwargs": {...}}; a payload
    that does not follow it is shown whole as args."""
    whole = show_bytes(payload, content_type)
    if whole.kind != "json":
        return whole, Shown("empty", "", 0)
    data = json.loads(payload)
    if isinstance(data, dict) and set(data) <= {"args", "kwargs"}:
        return show_value(data.get("args", []), len(payload)), show_value(data.get("kwargs", {}), len(payload))
    return whole, Shown("empty", "", 0)
