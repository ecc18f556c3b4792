"""The tasks page's filters, from and to its query string (so a search is a URL to share).

Times are absolute (ISO 8601, UTC when no zone is given), never "an hour ago": the scheduler
ties a cursor to its exact filter, so a relative time would break the next page."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from starlette.datastructures import QueryParams

from conveyor.common import TaskState

PAGE_SIZE = 50
STATES = [s.name for s in TaskState if s is not TaskState.UNSPECIFIED]


def parse_time(text: str, field: str) -> dt.datetime | None:
    if not text:
        return None
    try:
        when = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{field}: {text!r} is not a date and time (e.g. 2026-01-31T12:00)") from None
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)


@dataclass(frozen=True)
class TaskQuery:
    queue: str = ""
    state: str = ""
    name: str = ""
    worker: str = ""
    since: str = ""
    until: str = ""
    cursor: str = ""

    @classmethod
    def of(cls, params: QueryParams) -> TaskQuery:
        get = lambda key: params.get(key, "").strip()  # noqa: E731
        state = get("state").upper()
        if state and state not in STATES:
            raise ValueError(f"state: {state!r} is not one of {', '.join(STATES)}")
        return cls(get("queue"), state, get("name"), get("worker"), get("since"), get("until"), get("cursor"))

    def filter_args(self) -> dict[str, Any]:
        """Keyword arguments of AsyncClient.admin.list_tasks; a name ending in * is a prefix."""
        prefix = self.name.endswith("*")
        return {"queue": self.queue or None, "states": [self.state] if self.state else (),
                "name": None if prefix or not self.name else self.name,
                "name_prefix": self.name[:-1] or None if prefix else None, "worker_id": self.worker or None,
                "since": parse_time(self.since, "since"), "until": parse_time(self.until, "until")}

    def url(self, cursor: str = "") -> str:
        fields = {"queue": self.queue, "state": self.state, "name": self.name, "worker": self.worker,
                  "since": self.since, "until": self.until, "cursor": cursor}
        query = urlencode({k: v for k, v in fields.items() if v})
        return "/tasks" + (f"?{query}" if query else "")
