"""CSRF: every POST carries the session's secret token, as the form field `csrf` or (htmx) the
header X-CSRF-Token. The cookie is SameSite=Strict too; this holds even where that is not honoured."""

from __future__ import annotations

import hmac

from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import Request

from conveyor_dashboard.sessions import Session

FIELD, HEADER = "csrf", "x-csrf-token"


async def checked_form(request: Request, session: Session | None) -> FormData:
    """The POST's form, once its CSRF token is the session's; else 403."""
    form = await request.form()
    sent = request.headers.get(HEADER) or form.get(FIELD)
    if session is None or not isinstance(sent, str) or not hmac.compare_digest(sent, session.csrf):
        raise HTTPException(403, "missing or wrong CSRF token: reload the page and try again")
    return form
