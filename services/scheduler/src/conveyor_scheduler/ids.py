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
_DIGITS = frozenset(ALPHABET + ALPHABET.lower())
_PAIRS = [a + b for a in ALPHABET for b in ALPHABET]
"""Every two-character run, indexed by the 10 bits it encodes: ids are minted 10 bits a step."""
_TO_BASE32HEX = str.maketrans(ALPHABET + ALPHABET.lower() + "ILOUilou",
                              "0123456789abcdefghijklmnopqrstuv" * 2 + "!" * 8)
"""Crockford's digits to the ones int(_, 32) reads; letters outside the alphabet to '!'."""
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
    prefix = _encode(ms << 80)[:10]  # the first 10 characters hold only the time
    code = queue_code << 64
    noise = os.urandom(8 * count)
    p = _PAIRS
    out = []
    for i in range(count):
        v = code | int.from_bytes(noise[i * 8 : i * 8 + 8], "big")  # the last 80 bits, 10 at a time
        out.append(prefix + p[v >> 70] + p[(v >> 60) & 1023] + p[(v >> 50) & 1023] + p[(v >> 40) & 1023]
                   + p[(v >> 30) & 1023] + p[(v >> 20) & 1023] + p[(v >> 10) & 1023] + p[v & 1023])
    return out


def parse_task_id(task_id: str) -> tuple[int, int]:
    """Returns (creation ms, queue code) of a task id, or raises BadTaskId."""
    if len(task_id) != ID_LENGTH:
        raise BadTaskId(f"a task id has {ID_LENGTH} characters, got {len(task_id)}")
    digits = task_id.translate(_TO_BASE32HEX)
    if not (digits.isascii() and digits.isalnum()):  # int() would take signs, spaces, "_"
        bad = next(ch for ch in task_id if ch not in _DIGITS)
        raise BadTaskId(f"a task id has only Crockford base32 characters, got {bad!r}")
    value = int(digits, 32)
    if value >> 128:
        raise BadTaskId("a task id encodes 128 bits; this one overflows")
    return value >> 80, (value >> 64) & MAX_QUEUE_CODE


def created_ms(task_id: str) -> int:
    """The creation ms of an id already checked (one the store holds): its first 10 characters."""
    return int(task_id[:10].translate(_TO_BASE32HEX), 32)


def _encode(value: int) -> str:
    p = _PAIRS
    return "".join([p[(value >> shift) & 1023] for shift in range(120, -1, -10)])
