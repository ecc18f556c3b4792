"""/ : throughput, failures and p95 wait, backlog per queue, workers online, the beat leader."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from conveyor_dashboard.overview import chart, snapshot
from conveyor_dashboard.sessions import Session
from conveyor_dashboard.web import page


async def overview(request: Request) -> Response:
    async def load(session: Session) -> Mapping[str, Any]:
        snap, history = await asyncio.gather(snapshot(session.client, recent_minutes=0),
                                             chart(session.client))
        return {"snap": snap, "history": history}

    return await page(request, "overview.html", load)


routes = [Route("/", overview)]
