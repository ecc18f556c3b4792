"""The cpu_bound scenario's work, the same function for Conveyor and Celery: pure Python,
about BURN_MS per call on this machine (calibrated once per run, in the producer)."""

from __future__ import annotations

import functools
import time

BURN_MS = 20.0
VARIANTS = 10
"""Tasks burn(n + i % VARIANTS): results differ between neighbours, and each is verified."""


def burn(n: int) -> int:
    total = 0
    for i in range(n):
        total += i * i % 7
    return total


@functools.cache
def burn_size() -> int:
    """The n for which burn(n) takes about BURN_MS here (best of 5 timings of a probe)."""
    probe = 100_000
    best = min(_timed(probe) for _ in range(5))
    return max(1, int(probe * BURN_MS / 1000 / best))


def _timed(n: int) -> float:
    t0 = time.perf_counter()
    burn(n)
    return time.perf_counter() - t0


@functools.cache
def expected(k: int) -> int:
    """burn(burn_size() + k), the result of every task with that variant."""
    return burn(burn_size() + k)
