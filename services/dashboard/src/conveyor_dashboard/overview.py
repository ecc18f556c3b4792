"""The overview's numbers, from ListQueues' 1/5/15-minute windows, ListWorkers and the beat
leader: one snapshot serves the page and each SSE push."""

from __future__ import annotations

import time
from typing import Any

from conveyor.admin_queues import QueueInfo
from conveyor.aio import AsyncClient
from conveyor.errors import RPCError

WINDOWS = (1, 5, 15)


def _window_totals(queues: list[QueueInfo], minutes: int) -> dict[str, Any]:
    done = failed = submitted = 0
    covered = 0.0
    wait_p95: float | None = None
    for q in queues:
        w = q.windows.get(minutes)
        if w is None:
            continue
        done += w.succeeded + w.failed + w.dead + w.expired + w.cancelled
        failed += w.failed + w.dead
        submitted += w.submitted
        covered = max(covered, w.covered)
        if w.wait_p95 is not None:  # the fleet's p95 is at most the worst queue's: show that bound
            wait_p95 = max(wait_p95 or 0.0, w.wait_p95)
    return {"minutes": minutes, "done": done, "failed": failed, "submitted": submitted,
            "throughput": round(done / covered, 3) if covered else 0.0,
            "failures_per_s": round(failed / covered, 3) if covered else 0.0,
            "wait_p95": wait_p95}


async def snapshot(client: AsyncClient) -> dict[str, Any]:
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
    }
