"""Task ids: ULIDs whose random part carries the queue's number.

A ULID is 48 bits of milliseconds and 80 bits of entropy, written as 26 Crockford
base32 characters, so ids sort by creation time. Conveyor spends 16 of the 80 bits on
the queue's registered number (like a shard id in a Snowflake id): any replica can find
a task's queue, and so its Redis hash tag, from the id alone, with no per-task index.
"""

from __future__ import annotations

import os
import time

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_DECODE = {c: i for i, c in enumerate(ALPHABET)} | {c.lower(): i for i, c in enumerate(ALPHABET)}
ID_LENGTH = 26
MAX_QUEUE_CODE = 0xFFFF


class BadTaskId(ValueError):
    """The string is not a Conveyor task id."""


def new_task_id(queue_code: int, now_ms: int | None = None) -> str:
    """A fresh id for a task of the queue numbered `queue_code`."""
    ms = int(time.time() * 1000) if now_ms is None else now_ms
    value = (ms << 80) | (queue_code << 64) | int.from_bytes(os.urandom(8), "big")
    return _encode(value)


def new_task_ids(queue_code: int, count: int, now_ms: int | None = None) -> list[str]:
    """`count` fresh ids sharing one timestamp (one urandom call for the batch)."""
    ms = int(time.time() * 1000) if now_ms is None else now_ms
    head = (ms << 80) | (queue_code << 64)
    noise = os.urandom(8 * count)
    return [_encode(head | int.from_bytes(noise[i * 8 : i * 8 + 8], "big")) for i in range(count)]


def parse_task_id(task_id: str) -> tuple[int, int]:
    """Returns (creation ms, queue code) of a task id, or raises BadTaskId."""
    if len(task_id) != ID_LENGTH:
        raise BadTaskId(f"a task id has {ID_LENGTH} characters, got {len(task_id)}")
    value = 0
    for ch in task_id:
        digit = _DECODE.get(ch)
        if digit is None:
            raise BadTaskId(f"a task id has only Crockford base32 characters, got {ch!r}")
        value = (value << 5) | digit
    if value >> 128:
        raise BadTaskId("a task id encodes 128 bits; this one overflows")
    return value >> 80, (value >> 64) & MAX_QUEUE_CODE


def _encode(value: int) -> str:
    chars = []
    for _ in range(ID_LENGTH):
        chars.append(ALPHABET[value & 31])
        value >>= 5
    return "".join(reversed(chars))
