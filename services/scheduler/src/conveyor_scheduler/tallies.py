"""Per-task metrics counted in plain Python on the hot path, and read when metrics are collected.

Recording through the OpenTelemetry SDK costs about 20 µs a call; a `Tally.add` is a dict
update. The event loop's thread
is the only writer. Readers (the /metrics thread, OTel's export thread) take copies: copying a
dict or a list is one step under the GIL, so a reader never sees a half-made update, and since
counts only grow, every total it reads is monotonic.

Like the OTel SDK (its default cardinality limit), each keeps at most `MAX_SERIES` keys; what
comes after under new keys is counted under `OVERFLOW`, exported as `otel.metric.overflow=true`.
"""

from __future__ import annotations

Key = tuple[str, ...] | None
MAX_SERIES = 2000
OVERFLOW: Key = None
"""The key counting what arrived under new keys once `MAX_SERIES` were taken."""


class Tally:
    """Monotonic counts per key (a tuple of attribute values)."""

    __slots__ = ("counts", "max_series")

    def __init__(self, max_series: int = MAX_SERIES) -> None:
        self.counts: dict[Key, int] = {}
        self.max_series = max_series

    def add(self, key: Key, n: int = 1) -> None:
        counts = self.counts
        if key not in counts and len(counts) >= self.max_series:
            key = OVERFLOW
        counts[key] = counts.get(key, 0) + n

    def totals(self) -> dict[Key, int]:
        """A copy of the counts (safe to call from any thread)."""
        return self.counts.copy()
