"""task_routes: Celery's routers, resolved in the producer to a queue (and a priority).

A router is a dict by task name, whose keys may be globs (`"feeds.*"`) or compiled regexes, a
function `(name, args, kwargs, options, task=None, **kw)` or an object with `route_for_task`, or a
list of these, tried in order; the first answer wins. An answer is a queue name or a dict with
`queue` and `priority`. Exchanges and routing keys are AMQP's and are refused: a Conveyor queue
is just a name, created when first used.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from conveyor.celery.exceptions import Unsupported

Router = Callable[..., Any]
ROUTE_KEYS = frozenset({"queue", "priority"})
AMQP_KEYS = frozenset({"exchange", "exchange_type", "routing_key", "delivery_mode", "binding_key", "queue_arguments"})


def destination(value: Any, where: str = "task_routes") -> dict[str, Any]:
    """A router's answer as {"queue": ..., "priority": ...}; refuses AMQP keys and unknown ones."""
    if isinstance(value, str):
        return {"queue": value}
    if not isinstance(value, Mapping):
        raise Unsupported(where, f"a route is a queue name or a dict with 'queue' and 'priority', not {value!r} "
                                 "(kombu Queue objects are AMQP declarations)")
    amqp = sorted(AMQP_KEYS & set(value))
    if amqp:
        raise Unsupported(f"{where}: {', '.join(amqp)}", "AMQP routing (exchanges, routing keys) does not exist "
                          "in Conveyor: a task goes to the queue its route names, and workers take queues with -Q")
    unknown = sorted(set(value) - ROUTE_KEYS)
    if unknown:
        raise Unsupported(f"{where}: {', '.join(unknown)}", "a route gives 'queue' and 'priority' only")
    return {k: v for k, v in value.items() if v is not None}


class MapRoute:
    """A dict router: the exact task name first, then glob (`*`) and regex keys in order."""

    def __init__(self, routes: Mapping[Any, Any]) -> None:
        self.exact: dict[str, dict[str, Any]] = {}
        self.patterns: list[tuple[re.Pattern[str], dict[str, Any]]] = []
        for key, value in routes.items():
            dest = destination(value, f"task_routes[{key!r}]")
            if isinstance(key, re.Pattern):
                self.patterns.append((key, dest))
            elif isinstance(key, str) and "*" in key:
                self.patterns.append((re.compile(re.escape(key).replace(r"\*", ".*") + r"\Z"), dest))
            elif isinstance(key, str):
                self.exact[key] = dest
            else:
                raise Unsupported("task_routes", f"a route's key is a task name, glob or re.compile(...), not {key!r}")

    def __call__(self, name: str, *args: Any, **kwargs: Any) -> dict[str, Any] | None:
        if name in self.exact:
            return self.exact[name]
        for pattern, dest in self.patterns:
            if pattern.match(name):
                return dest
        return None


def compile_routes(value: Any) -> list[Router]:
    """The routers `task_routes` gives (checked now: a bad dict fails at configuration time)."""
    if value is None:
        return []
    items: Sequence[Any] = value if isinstance(value, list | tuple) else [value]
    routers: list[Router] = []
    for item in items:
        if isinstance(item, Mapping):
            routers.append(MapRoute(item))
        elif hasattr(item, "route_for_task"):
            routers.append(_method_router(item))
        elif callable(item):
            routers.append(item)
        else:
            raise Unsupported("task_routes", f"{item!r}: give dicts, functions or objects with route_for_task (not "
                                             "import paths: pass the function itself)")
    return routers


def _method_router(router: Any) -> Router:
    def call(name: str, args: Any, kwargs: Any, options: Any, task: Any = None, **kw: Any) -> Any:
        return router.route_for_task(name, args, kwargs)
    return call


def route(routers: Sequence[Router], name: str, args: Sequence[Any], kwargs: Mapping[str, Any],
          options: Mapping[str, Any], task: Any = None) -> dict[str, Any]:
    """The first router's answer for this call ({} when none answers)."""
    for router in routers:
        answer = router(name, args, kwargs, options, task=task)
        if answer:
            return destination(answer, f"task_routes (answer for {name})")
    return {}
