"""Task ids: ULIDs whose random part carries the queue's number.

A ULID is 48 bits of milliseconds and 80 bits of entropy, written as 26 Crockford
base32 characters, so ids sort by creation time. Conveyor spends 16 of the 80 bits on
the queue's registered number (like a shard id in a Snowflake id): any replica can find
a task's queue, and so its Redis hash tag, from the id alone, with no per-task index.
Within one millisecond a queue's ids count up from a random start (see new_task_ids), so
the ids of one Submit sort in request order, queue by queue.
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
    return new_task_ids(queue_code, 1, now_ms)[0]


_LOW_START_BITS = 63
"""A millisecond's first id starts at a random 63-bit value: 2**63 ids of headroom below the
queue number's bits, so counting up within one millisecond never reaches them."""
_last: dict[int, tuple[int, int]] = {}
"""Queue number -> (ms, low 64 bits of the next id) of this process's latest mint. The
scheduler mints on its event loop only (no await inside), so no lock is needed."""


def new_task_ids(queue_code: int, count: int, now_ms: int | None = None) -> list[str]:
    """`count` fresh ids sharing one timestamp, strictly increasing in the order returned.

    Like a monotonic ULID: a millisecond's first id has random low bits and each later id
    in that millisecond (in this call or a later one of this process, for the same queue)
    is the previous one plus 1, so ids sort in mint order. Ids minted by other replicas in
    the same millisecond start elsewhere in the 2**63 range and do not collide in practice.
    """
    ms = int(time.time() * 1000) if now_ms is None else now_ms
    last = _last.get(queue_code)
    if last is not None and last[0] == ms:
        low = last[1]
    else:
        low = int.from_bytes(os.urandom(8), "big") >> (64 - _LOW_START_BITS)
    _last[queue_code] = (ms, low + count)
    return _mint(ms, queue_code, low, count)


def _mint(ms: int, queue_code: int, low: int, count: int) -> list[str]:
    """The ids of (ms, queue_code, low + i) for i < count, 10 bits a step; ids that differ
    only in their last 10 bits share their first 24 characters, built once per 1024 ids."""
    p = _PAIRS
    # The first 10 characters encode bits 80..129 of the 128-bit value: the 48-bit ms alone.
    time_part = p[ms >> 40] + p[(ms >> 30) & 1023] + p[(ms >> 20) & 1023] + p[(ms >> 10) & 1023] + p[ms & 1023]
    out: list[str] = []
    v = (queue_code << 64) | low  # the last 80 bits
    end = v + count
    while v < end:
        head, first = v >> 10, v & 1023
        prefix = (time_part + p[head >> 60] + p[(head >> 50) & 1023] + p[(head >> 40) & 1023]
                  + p[(head >> 30) & 1023] + p[(head >> 20) & 1023] + p[(head >> 10) & 1023] + p[head & 1023])
        n = min(end - v, 1024 - first)
        if n == 1:
            out.append(prefix + p[first])
        else:
            out += [prefix + last for last in p[first:first + n]]
        v += n
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
