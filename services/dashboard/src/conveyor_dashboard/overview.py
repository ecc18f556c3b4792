"""The overview's numbers, from ListQueues' 1/5/15-minute windows, ListWorkers and the beat
leader: one snapshot serves the page and each SSE push. The chart's points come from
GetQueueHistory (the scheduler's per-minute history, fleet-wide): the page draws the hour,
and each push carries the last two minutes to move it along."""

from __future__ import annotations

import time
from typing import Any

from conveyor.admin_queues import QueueHistory, QueueInfo, QueueWindow
from conveyor.aio import AsyncClient
from conveyor.errors import RPCError

WINDOWS = (1, 5, 15)
CHART_MINUTES = 60
PUSHED_MINUTES = 2
"""Each push carries the current minute and the one before (which may have grown since the
last push if it ended in between)."""

ChartPoint = tuple[float, float, float, float | None]
"""(minute start, completions/s, failures/s, p95 wait s): one point of the overview chart."""


def _done(w: QueueWindow) -> int:
    return w.succeeded + w.failed + w.dead + w.expired + w.cancelled


def chart_points(history: QueueHistory) -> list[ChartPoint]:
    """The fleet's minutes as the chart draws them (rates per second of each minute's coverage)."""
    return [(w.start, round(_done(w) / w.covered, 3) if w.covered else 0.0,
             round((w.failed + w.dead) / w.covered, 3) if w.covered else 0.0, w.wait_p95) for w in history.total]


async def chart(client: AsyncClient, minutes: int = CHART_MINUTES) -> list[ChartPoint]:
    return chart_points(await client.admin.queue_history(minutes=minutes))


def _window_totals(queues: list[QueueInfo], minutes: int) -> dict[str, Any]:
    done = failed = submitted = 0
    covered = 0.0
    wait_p95: float | None = None
    for q in queues:
        w = q.windows.get(minutes)
        if w is None:
            continue
        done += _done(w)
        failed += w.failed + w.dead
        submitted += w.submitted
        covered = max(covered, w.covered)
        if w.wait_p95 is not None:  # the fleet's p95 is at most the worst queue's: show that bound
            wait_p95 = max(wait_p95 or 0.0, w.wait_p95)
    return {"minutes": minutes, "done": done, "failed": failed, "submitted": submitted,
            "throughput": round(done / covered, 3) if covered else 0.0,
            "failures_per_s": round(failed / covered, 3) if covered else 0.0,
            "wait_p95": wait_p95}


async def snapshot(client: AsyncClient, recent_minutes: int = PUSHED_MINUTES) -> dict[str, Any]:
    """The numbers; `recent` holds the chart's last `recent_minutes` points (the page, which
    draws the whole hour itself, asks for none)."""
    queues = await client.admin.queues()
    workers = await client.admin.list_workers()
    try:
        leader = await client.schedules.beat_leader()
    except RPCError:  # e.g. a token scoped to queues may not list schedules
        leader = ""
    return {
        "at": time.time(),
        "windows": [_window_totals(queues, m) for m in WINDOWS],
        "backlog": [{"queue": q.name, "queued": q.queued, "scheduled": q.scheduled, "active": q.active,
                     "dead": q.dead, "paused": q.paused} for q in queues],
        "workers_online": len(workers),
        "workers_draining": sum(1 for w in workers if w.draining),
        "beat_leader": leader,
        "recent": await chart(client, recent_minutes) if recent_minutes else [],
    }
