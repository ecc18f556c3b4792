"""The ASGI app: routes of every page group, static files, and the state they share."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles

from conveyor_dashboard import (
    events,
    pages_auth,
    pages_dead,
    pages_overview,
    pages_queues,
    pages_schedules,
    pages_tasks,
    pages_workers,
    pages_workflows,
)
from conveyor_dashboard.render import HERE
from conveyor_dashboard.sessions import Sessions
from conveyor_dashboard.settings import Settings
from conveyor_dashboard.web import Dashboard

VENDOR = HERE / "static" / "vendor"


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return PlainTextResponse(f"{exc.status_code}: {exc.detail}", exc.status_code, headers=exc.headers)


def create_app(settings: Settings) -> Starlette:
    """Channels are opened lazily by grpc; the app's lifespan closes them and the overview polls."""
    if not (VENDOR / "htmx.min.js").exists():
        raise RuntimeError(f"{VENDOR} lacks the npm assets: run `make install` (it copies them from node_modules)")

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        dash = Dashboard(settings, Sessions(settings), events.OverviewHub(settings.overview_interval_s))
        app.state.dashboard = dash
        try:
            yield
        finally:
            await dash.hub.close()
            await dash.sessions.close()

    routes = [*pages_auth.routes, *pages_overview.routes, *pages_queues.routes, *pages_tasks.routes,
              *pages_dead.routes, *pages_workers.routes, *pages_schedules.routes, *pages_workflows.routes,
              *events.routes,
              Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")]
    return Starlette(routes=routes, lifespan=lifespan, exception_handlers={HTTPException: _http_error})
