"""The payload rule every language follows: JSON ``{"args": [...], "kwargs": {...}}``.

Results are the JSON of the return value. Both use content type application/json.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

JSON = "application/json"
_encode = json.JSONEncoder(separators=(",", ":")).encode
"""json.dumps(value, separators=(",", ":")) without building an encoder per call."""
_decode = json.JSONDecoder().decode


def encode_call(args: Sequence[Any] = (), kwargs: Mapping[str, Any] | None = None) -> bytes:
    return _encode({"args": list(args), "kwargs": dict(kwargs or {})}).encode()


def decode_call(payload: bytes, content_type: str = JSON) -> tuple[list[Any], dict[str, Any]]:
    if content_type not in ("", JSON):
        raise ValueError(f"the Python SDK decodes {JSON} payloads, not {content_type!r}")
    if not payload:
        return [], {}
    if payload[:1] == b"{" and payload[1:2] != b"\0":  # what json.loads(bytes) would sniff as UTF-8
        data = _decode(payload.decode("utf-8", "surrogatepass"))
    else:
        data = json.loads(payload)
    if not isinstance(data, dict):
        raise ValueError('a payload is a JSON object {"args": [...], "kwargs": {...}}')
    args, kwargs = data.get("args", []), data.get("kwargs", {})
    if not isinstance(args, list) or not isinstance(kwargs, dict):
        raise ValueError('payload "args" must be a list and "kwargs" an object')
    return args, kwargs


def encode_result(value: Any) -> bytes:
    return _encode(value).encode()


def decode_result(data: bytes, content_type: str = JSON) -> Any:
    if content_type not in ("", JSON):
        return data
    return json.loads(data) if data else None
