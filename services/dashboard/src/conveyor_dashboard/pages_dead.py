"""/dead?queue=Q: a queue's dead letters, a page of at most 100 at a time (offset in the query);
requeue or purge one, a selection, or all."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from conveyor_dashboard.sessions import Session
from conveyor_dashboard.web import act, field, page

PAGE_SIZE = 100


def _offset(text: str) -> int:
    return int(text) if text.isdigit() else 0


async def dead(request: Request) -> Response:
    queue = request.query_params.get("queue", "").strip()
    offset = _offset(request.query_params.get("offset", ""))

    async def load(session: Session) -> Mapping[str, Any]:
        queues = await session.client.admin.queues()
        with_dead = [q for q in queues if q.dead]
        chosen = queue or (with_dead[0].name if with_dead else "")
        letters, total = ([], 0)
        if chosen:
            found = await session.client.admin.list_dead_letters(chosen, PAGE_SIZE, offset)
            letters, total = found.tasks, found.total
        nxt = offset + PAGE_SIZE
        return {"queue": chosen, "queues": queues, "letters": letters, "total": total, "offset": offset,
                "next_url": f"/dead?{urlencode({'queue': chosen, 'offset': nxt})}" if nxt < total else "",
                "prev_url": f"/dead?{urlencode({'queue': chosen, 'offset': max(0, offset - PAGE_SIZE)})}"
                if offset else ""}

    return await page(request, "dead.html", load)


def _selection(form: FormData) -> list[str]:
    if field(form, "all") == "1":
        return []
    ids = [i for i in form.getlist("ids") if isinstance(i, str) and i]
    if not ids:
        raise ValueError("select dead letters first (or use 'all')")
    return ids


async def requeue(request: Request) -> Response:
    queue = request.path_params["queue"]

    async def run(session: Session, form: FormData) -> str:
        done = await session.client.admin.requeue_dead_letters(queue, _selection(form))
        return f"requeued {done:,} dead letters of queue {queue}"

    return await act(request, "dead.requeue", run, f"/dead?queue={queue}")


async def purge(request: Request) -> Response:
    queue = request.path_params["queue"]

    async def run(session: Session, form: FormData) -> str:
        done = await session.client.admin.purge_dead_letters(queue, _selection(form))
        return f"purged {done:,} dead letters of queue {queue}"

    return await act(request, "dead.purge", run, f"/dead?queue={queue}")


routes = [
    Route("/dead", dead),
    Route("/dead/{queue}/requeue", requeue, methods=["POST"]),
    Route("/dead/{queue}/purge", purge, methods=["POST"]),
]
