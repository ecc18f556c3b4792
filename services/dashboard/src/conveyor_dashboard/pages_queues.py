"""/queues: depth by state, oldest age, rates, names no worker runs; pause, resume, purge."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from conveyor_dashboard.sessions import Session
from conveyor_dashboard.web import act, field, page


async def queues(request: Request) -> Response:
    async def load(session: Session) -> Mapping[str, Any]:
        return {"queues": await session.client.admin.queues()}

    return await page(request, "queues.html", load)


async def pause(request: Request) -> Response:
    queue = request.path_params["queue"]

    async def run(session: Session, form: FormData) -> str:
        was = await session.client.admin.pause_queue(queue)
        return f"queue {queue} was paused already" if was else f"paused queue {queue}"

    return await act(request, "queue.pause", run, "/queues")


async def resume(request: Request) -> Response:
    queue = request.path_params["queue"]

    async def run(session: Session, form: FormData) -> str:
        was = await session.client.admin.resume_queue(queue)
        return f"resumed queue {queue}" if was else f"queue {queue} was not paused"

    return await act(request, "queue.resume", run, "/queues")


async def purge(request: Request) -> Response:
    queue = request.path_params["queue"]

    async def run(session: Session, form: FormData) -> str:
        confirm = field(form, "confirm").strip()
        if not confirm.isdigit():
            raise ValueError("type the number of tasks shown to confirm the purge")
        [info] = await session.client.admin.queues(queue)
        if int(confirm) != info.queued + info.scheduled:
            raise ValueError(f"the count changed to {info.queued + info.scheduled:,} (you confirmed {confirm}): "
                             f"look again and confirm the new count")
        purged = await session.client.admin.purge_queue(queue)
        return f"purged {purged:,} tasks of queue {queue}"

    return await act(request, "queue.purge", run, "/queues")


routes = [
    Route("/queues", queues),
    Route("/queues/{queue}/pause", pause, methods=["POST"]),
    Route("/queues/{queue}/resume", resume, methods=["POST"]),
    Route("/queues/{queue}/purge", purge, methods=["POST"]),
]
