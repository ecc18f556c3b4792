"""Applies the app's declared schedules (`@app.periodic`, `app.add_schedule`) on start-up.

Each one is created or updated by id (UpdateSchedule with allow_missing), which changes
nothing when the stored definition is the same, so every worker of a fleet can do it at
every start. Unreachable schedulers are retried in the background, the next address first;
a definition the scheduler refuses is logged and skipped (the worker still runs tasks).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from conveyor import App, AsyncClient, TLSConfig
from conveyor.errors import DeadlineExceeded, RPCError, Unavailable

log = logging.getLogger(__name__)


async def apply_schedules(app: App, targets: Sequence[str], max_backoff: float = 5.0, *,
                          tls: TLSConfig | None = None, token: str | None = None) -> None:
    pending = dict(app.schedules)
    backoff, attempt = 0.2, 0
    while pending:
        target = targets[attempt % len(targets)]
        try:
            async with AsyncClient(target, tls=tls, token=token, timeout=10.0) as client:
                for schedule_id, schedule in list(pending.items()):
                    try:
                        stored = await client.schedules.apply(schedule)
                    except (Unavailable, DeadlineExceeded):
                        raise
                    except RPCError as exc:
                        log.error("schedule %s was refused by the scheduler: %s", schedule_id, exc)
                    else:
                        log.info("schedule %s applied (next fire %s)", schedule_id,
                                 stored.next_fire_time.ToJsonString() if stored.HasField("next_fire_time") else "none")
                    del pending[schedule_id]
        except (Unavailable, DeadlineExceeded) as exc:
            log.warning("cannot apply schedules via %s yet (%s); retrying in %.1fs", target, exc, backoff)
            await asyncio.sleep(backoff)
            backoff, attempt = min(backoff * 2, max_backoff), attempt + 1
