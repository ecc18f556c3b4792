"""/workers: queues, in-flight tasks, done/failed, heartbeat age, replica; drain, shutdown, scale."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from conveyor_dashboard.sessions import Session
from conveyor_dashboard.web import act, field, page


async def workers(request: Request) -> Response:
    queue = request.query_params.get("queue", "").strip()

    async def load(session: Session) -> Mapping[str, Any]:
        found = await session.client.admin.list_workers(queue or None)
        now = dt.datetime.now(dt.UTC)
        return {"workers": found, "queue": queue,
                "heartbeat_age": {w.id: (now - w.last_heartbeat).total_seconds() for w in found}}

    return await page(request, "workers.html", load)


async def drain(request: Request) -> Response:
    worker_id = request.path_params["worker_id"]

    async def run(session: Session, form: FormData) -> str:
        await session.client.admin.drain_worker(worker_id, "drained from the dashboard")
        return f"asked worker {worker_id} to drain"

    return await act(request, "worker.drain", run, "/workers")


async def shutdown(request: Request) -> Response:
    worker_id = request.path_params["worker_id"]

    async def run(session: Session, form: FormData) -> str:
        await session.client.admin.shutdown_worker(worker_id, "shut down from the dashboard")
        return f"asked worker {worker_id} to shut down"

    return await act(request, "worker.shutdown", run, "/workers")


async def scale(request: Request) -> Response:
    worker_id = request.path_params["worker_id"]

    async def run(session: Session, form: FormData) -> str:
        text = field(form, "concurrency").strip()
        if not text.isdigit() or int(text) < 1:
            raise ValueError("concurrency: a whole number of slots, 1 or more")
        await session.client.admin.set_concurrency(worker_id, int(text))
        return f"asked worker {worker_id} to run {int(text)} at once"

    return await act(request, "worker.scale", run, "/workers")


routes = [
    Route("/workers", workers),
    Route("/workers/{worker_id}/drain", drain, methods=["POST"]),
    Route("/workers/{worker_id}/shutdown", shutdown, methods=["POST"]),
    Route("/workers/{worker_id}/scale", scale, methods=["POST"]),
]
