"""Task ids: 26-char Crockford base32 ULIDs carrying the queue number."""

from __future__ import annotations

import random
import re
import time

import pytest

from conveyor_scheduler.ids import (
    ALPHABET,
    ID_LENGTH,
    MAX_QUEUE_CODE,
    BadTaskId,
    _encode,
    _mint,
    new_task_id,
    new_task_ids,
    parse_task_id,
)

ID_RE = re.compile(r"[0-9A-HJKMNP-TV-Z]{26}")
MAX_MS = (1 << 48) - 1


@pytest.mark.parametrize(("code", "ms"), [
    (0, 0), (1, 1), (7, 1_700_000_000_123), (MAX_QUEUE_CODE, 1_700_000_000_123), (MAX_QUEUE_CODE, MAX_MS),
    (12345, MAX_MS),
])
def test_round_trip(code: int, ms: int) -> None:
    task_id = new_task_id(code, ms)
    assert len(task_id) == ID_LENGTH == 26
    assert ID_RE.fullmatch(task_id)
    assert parse_task_id(task_id) == (ms, code)


def test_default_time_is_now() -> None:
    before = int(time.time() * 1000)
    ms, code = parse_task_id(new_task_id(3))
    after = int(time.time() * 1000)
    assert code == 3
    assert before <= ms <= after


def test_ids_are_unique_within_one_millisecond() -> None:
    ids = {new_task_id(1, 1000) for _ in range(1000)}
    assert len(ids) == 1000


def test_a_batch_in_one_millisecond_is_in_request_order() -> None:
    ids = new_task_ids(3, 10_000, 1_700_000_000_000)
    assert ids == sorted(ids)
    assert len(set(ids)) == 10_000
    assert {parse_task_id(i) for i in ids} == {(1_700_000_000_000, 3)}


def test_later_calls_in_the_same_millisecond_sort_after_earlier_ones() -> None:
    ms = 1_700_000_000_500
    calls = [new_task_ids(8, n, ms) for n in (1, 1500, 1, 700)] + [[new_task_id(8, ms)]]
    ids = [i for call in calls for i in call]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids) == 2203
    later = new_task_ids(8, 5, ms + 1)  # a new millisecond starts at a fresh random point
    assert min(later) > max(ids)


def test_queues_count_up_independently() -> None:
    ms = 1_700_000_000_900
    a1, b, a2 = new_task_ids(10, 3, ms), new_task_ids(11, 3, ms), new_task_ids(10, 3, ms)
    assert a1 + a2 == sorted(a1 + a2)
    assert b == sorted(b)
    assert {parse_task_id(i)[1] for i in a1 + a2} == {10}


@pytest.mark.parametrize("low", [0, 1023, 1024 - 5, (1 << 20) - 3, (1 << 63) - 2, (1 << 64) - 2000])
def test_counting_across_character_boundaries(low: int) -> None:
    """A carry out of the last 10 bits changes earlier characters: every id still matches
    the per-character definition, and the run stays sorted."""
    for ms, code in ((1_700_000_000_000, 5), (MAX_MS, MAX_QUEUE_CODE)):
        ids = _mint(ms, code, low, 1999)  # ends at most at the largest 64-bit value
        assert ids == sorted(ids)
        assert [parse_task_id(i) for i in ids] == [(ms, code)] * 1999
        for i, task_id in enumerate(ids):
            assert task_id == _reference_encode((ms << 80) | (code << 64) | (low + i))


def test_ids_sort_by_time_whatever_the_queue() -> None:
    stamps = [0, 1, 999, 1000, 1_700_000_000_000, 1_700_000_000_001, MAX_MS]
    ids = [new_task_id(code, ms) for ms, code in zip(stamps, [MAX_QUEUE_CODE, 5, 0, 9, MAX_QUEUE_CODE, 0, 1],
                                                      strict=True)]
    assert sorted(ids) == ids
    assert [parse_task_id(i)[0] for i in sorted(ids)] == stamps


def test_batch_ids_share_time_and_queue() -> None:
    ids = new_task_ids(42, 500, 1_700_000_000_000)
    assert len(ids) == len(set(ids)) == 500
    assert {parse_task_id(i) for i in ids} == {(1_700_000_000_000, 42)}
    assert new_task_ids(1, 0, 5) == []


def test_lowercase_is_accepted() -> None:
    task_id = new_task_id(77, 1_700_000_000_000)
    assert parse_task_id(task_id.lower()) == (1_700_000_000_000, 77)


def test_largest_id() -> None:
    assert parse_task_id("7ZZZZZZZZZZZZZZZZZZZZZZZZZ") == (MAX_MS, MAX_QUEUE_CODE)
    assert parse_task_id("0" * 26) == (0, 0)


@pytest.mark.parametrize("bad", [
    "", "nope", "0" * 25, "0" * 27, new_task_id(1, 1)[:-1],
    "0" * 25 + "U", "0" * 25 + "I", "0" * 25 + "L", "0" * 25 + "O",  # not in Crockford's alphabet
    "0" * 25 + "-", "0" * 25 + " ", "0" * 25 + "é",
    "8" + "0" * 25, "Z" * 26,  # overflow 128 bits
])
def test_bad_ids_raise(bad: str) -> None:
    with pytest.raises(BadTaskId):
        parse_task_id(bad)


def test_bad_task_id_is_a_value_error() -> None:
    assert issubclass(BadTaskId, ValueError)


def test_alphabet_is_crockford() -> None:
    assert len(ALPHABET) == len(set(ALPHABET)) == 32
    assert not set("ILOU") & set(ALPHABET)


def _reference_encode(value: int) -> str:
    """Crockford base32 one character (5 bits) at a time: what the table-driven encoders must give."""
    return "".join(ALPHABET[(value >> (5 * k)) & 31] for k in range(ID_LENGTH - 1, -1, -1))


def test_ids_match_the_per_character_definition() -> None:
    rng = random.Random(6)
    for _ in range(2000):
        ms, code, noise = rng.getrandbits(48), rng.getrandbits(16), rng.getrandbits(64)
        value = (ms << 80) | (code << 64) | noise
        assert _encode(value) == _reference_encode(value)
        assert parse_task_id(_reference_encode(value)) == (ms, code)
    for task_id in new_task_ids(MAX_QUEUE_CODE, 200, MAX_MS) + new_task_ids(0, 200, 0):
        assert _reference_encode(int(task_id.translate(str.maketrans(ALPHABET, "0123456789abcdefghijklmnopqrstuv")),
                                     32)) == task_id
