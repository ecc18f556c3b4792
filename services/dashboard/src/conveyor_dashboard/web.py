"""What every page and action shares: the session of a request, rendering with it, and running
an action (CSRF, role, the call, a flash message, a 303 back to the page it came from)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import grpc
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from conveyor.errors import NotFound, PermissionDenied, RPCError, Unauthenticated, from_rpc_error
from conveyor_dashboard.csrf import checked_form
from conveyor_dashboard.render import templates
from conveyor_dashboard.sessions import Session, Sessions
from conveyor_dashboard.settings import Settings

Load = Callable[[Session], Awaitable[Mapping[str, Any]]]
Run = Callable[[Session, FormData], Awaitable[str]]


@dataclass
class Dashboard:
    """The app's state (request.app.state.dashboard)."""

    settings: Settings
    sessions: Sessions
    hub: Any  # events.OverviewHub (typed loosely: events imports this module)


def dashboard(request: Request) -> Dashboard:
    return request.app.state.dashboard  # type: ignore[no-any-return]


class SignInNeeded(Exception):
    pass


async def session_for(request: Request) -> Session:
    """The request's session; a guest one when the visitor need not sign in; else SignInNeeded."""
    dash = dashboard(request)
    session = dash.sessions.get(request)
    if session is not None:
        return session
    guest = await dash.sessions.guest_identity()
    if guest is None:
        raise SignInNeeded
    return dash.sessions.guest(guest)


def sign_in_redirect(request: Request) -> Response:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/signin?next={quote(target)}", 303)


def rpc_error(exc: BaseException) -> RPCError | None:
    if isinstance(exc, RPCError):
        return exc
    if isinstance(exc, grpc.RpcError):
        return from_rpc_error(exc)
    return None


def status_of(err: RPCError) -> int:
    if isinstance(err, PermissionDenied):
        return 403
    if isinstance(err, Unauthenticated):
        return 401
    if isinstance(err, NotFound):
        return 404
    code = getattr(err, "code", None)
    return 400 if code == grpc.StatusCode.INVALID_ARGUMENT else 503


def render(request: Request, session: Session, template: str, context: Mapping[str, Any],
           status: int = 200) -> Response:
    dash = dashboard(request)
    flashes, session.flashes = session.flashes, []
    ctx = {"session": session, "me": session.identity, "csrf": session.csrf, "flashes": flashes,
           "settings": dash.settings, "may": lambda action: session.identity.may(action, dash.settings.read_only),
           "here": request.url.path + (f"?{request.url.query}" if request.url.query else ""), **context}
    response = templates.TemplateResponse(request, template, ctx, status_code=status)
    response.headers["cache-control"] = "no-store"
    return dash.sessions.set_cookie(session, response)


async def page(request: Request, template: str, load: Load) -> Response:
    try:
        session = await session_for(request)
    except SignInNeeded:
        return sign_in_redirect(request)
    try:
        context = await load(session)
    except (RPCError, grpc.RpcError) as exc:
        err = rpc_error(exc)
        assert err is not None
        return render(request, session, "error.html", {"error": str(err)}, status_of(err))
    except ValueError as exc:  # a filter the page could not read
        return render(request, session, "error.html", {"error": str(exc)}, 400)
    return render(request, session, template, context)


def back(request: Request, form: FormData, fallback: str) -> str:
    """Where to go after an action: the form's `next` (a path on this site), else `fallback`."""
    target = form.get("next")
    if isinstance(target, str) and target.startswith("/") and not target.startswith("//"):
        return target
    return fallback


async def act(request: Request, action: str, run: Run, fallback: str) -> Response:
    """POST: CSRF first (403), then the role (403), then the call; 303 back with a message."""
    dash = dashboard(request)
    session = dash.sessions.get(request)
    form = await checked_form(request, session)
    assert session is not None
    if not session.identity.may(action, dash.settings.read_only):
        why = "the dashboard is read-only" if dash.settings.read_only else f"{session.identity.label} may not"
        raise HTTPException(403, f"{action}: {why}")
    try:
        message = await run(session, form)
        session.flashes.append(("ok", message))
    except (RPCError, grpc.RpcError) as exc:
        err = rpc_error(exc)
        assert err is not None
        if isinstance(err, PermissionDenied | Unauthenticated):
            raise HTTPException(403, f"{action}: the scheduler refused it: {err}") from None
        session.flashes.append(("error", f"{action}: {err}"))
    except ValueError as exc:
        session.flashes.append(("error", f"{action}: {exc}"))
    return RedirectResponse(back(request, form, fallback), 303)


def field(form: FormData, name: str) -> str:
    value = form.get(name)
    return value if isinstance(value, str) else ""
