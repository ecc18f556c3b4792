"""Routing: explicit queue wins, else the first task-name glob that matches, else 'default'."""

from __future__ import annotations

import re
from collections.abc import Iterable
from fnmatch import fnmatchcase
from functools import lru_cache

DEFAULT_QUEUE = "default"
QUEUE_RE = re.compile(r"[A-Za-z0-9_.\-]{1,64}")


class Router:
    """Maps a task name to its queue with (glob, queue) rules, first match wins."""

    def __init__(self, rules: Iterable[tuple[str, str]] = ()) -> None:
        self._rules = tuple(rules)
        self.route = lru_cache(maxsize=4096)(self._route)

    def _route(self, name: str) -> str:
        for pattern, queue in self._rules:
            if fnmatchcase(name, pattern):
                return queue
        return DEFAULT_QUEUE


def parse_route(text: str) -> tuple[str, str]:
    """Parses 'GLOB=QUEUE' (e.g. 'emails.*=emails')."""
    pattern, sep, queue = text.partition("=")
    pattern, queue = pattern.strip(), queue.strip()
    if not sep or not pattern or not queue:
        raise ValueError(f"a route is GLOB=QUEUE, got {text!r}")
    if not QUEUE_RE.fullmatch(queue):
        raise ValueError(f"route {text!r}: the queue must be 1 to 64 of letters, digits and _.-")
    return pattern, queue
