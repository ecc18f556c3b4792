"""Refused calls: counted for /metrics (conveyor.auth.denied) and logged, at most one line per
caller, method and reason every 10 seconds, so a client retrying in a loop cannot flood the log."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from conveyor_scheduler.tallies import Tally

if TYPE_CHECKING:
    from opentelemetry.metrics import CallbackOptions, Meter, Observation

log = logging.getLogger("conveyor_scheduler.auth")
LOG_EVERY_S = 10.0
MAX_LOG_KEYS = 10_000
METRIC = "conveyor.auth.denied"
# Reasons: the conveyor.auth.reason attribute.
NO_CREDENTIAL = "no_credential"
UNKNOWN_TOKEN = "unknown_token"
ROLE = "role"
QUEUE = "queue"


class Denials:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.tally = Tally()  # (method, reason)
        self._clock = clock
        self._last: dict[tuple[str, str, str], float] = {}

    def record(self, method: str, reason: str, who: str, peer: str, message: str) -> None:
        """Counts a refused call and logs it unless the same caller was logged for it lately.
        `who` names the caller (a token's name, a subject, or "anonymous"), never a secret."""
        self.tally.add((method.lstrip("/"), reason))
        key = (who, method, reason)
        now = self._clock()
        last = self._last.get(key)
        if last is not None and now - last < LOG_EVERY_S:
            return
        if len(self._last) >= MAX_LOG_KEYS:
            self._last = {k: t for k, t in self._last.items() if now - t < LOG_EVERY_S}
        self._last[key] = now
        log.warning("denied %s to %s from %s: %s", method.lstrip("/"), who, peer, message)

    def register(self, meter: Meter) -> None:
        """Puts the counter on a meter (Prometheus's or OTLP's)."""
        from opentelemetry.metrics import Observation  # noqa: PLC0415 - only when metrics are on

        def observe(options: CallbackOptions) -> Iterable[Observation]:
            return [Observation(n, {"otel.metric.overflow": True} if key is None else  # None: OVERFLOW
                                {"rpc.method": key[0], "conveyor.auth.reason": key[1]})
                    for key, n in self.tally.totals().items()]

        meter.create_observable_counter(METRIC, callbacks=[observe], unit="{call}",
                                        description="Calls refused by authentication or authorization, "
                                                    "by rpc.method and conveyor.auth.reason.")
