"""/signin and /signout: a Conveyor token in, a server-side session out (the token stays here)."""

from __future__ import annotations

import grpc
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from conveyor_dashboard.csrf import checked_form
from conveyor_dashboard.render import templates
from conveyor_dashboard.sessions import COOKIE
from conveyor_dashboard.web import back, dashboard, field


def _form(request: Request, error: str = "", status: int = 200) -> Response:
    nxt = request.query_params.get("next", "/")
    return templates.TemplateResponse(request, "signin.html", {"error": error, "next": nxt}, status_code=status)


async def signin(request: Request) -> Response:
    if request.method == "GET":
        return _form(request)
    form = await request.form()  # no session yet: SameSite=Strict and a fresh session id guard the sign-in
    token = field(form, "token").strip()
    if not token:
        return _form(request, "Paste a Conveyor token.", 400)
    sessions = dashboard(request).sessions
    try:
        session = await sessions.sign_in(token)
    except grpc.aio.AioRpcError as exc:
        if exc.code() in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
            return _form(request, "The scheduler does not know this token.", 401)
        return _form(request, f"The scheduler could not be asked: {exc.details()}", 503)
    old = sessions.get(request)
    if old is not None:
        await sessions.sign_out(old)
    return sessions.set_cookie(session, RedirectResponse(back(request, form, "/"), 303))


async def signout(request: Request) -> Response:
    sessions = dashboard(request).sessions
    session = sessions.get(request)
    if request.method == "POST":
        await checked_form(request, session)
    if session is not None:
        await sessions.sign_out(session)
    response = RedirectResponse("/signin", 303)
    response.delete_cookie(COOKIE, path="/")
    return response


routes = [Route("/signin", signin, methods=["GET", "POST"]), Route("/signout", signout, methods=["GET", "POST"])]
