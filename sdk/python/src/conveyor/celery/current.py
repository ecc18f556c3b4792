"""The current app (Celery's `current_app`): the last app made, unless it was made with
`set_as_current=False`. Results, signatures by name and shared tasks that name no app use it.
Also the shared-task registry: `shared_task` registers on every app, made before or after it."""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

_current: Any = None
_apps: weakref.WeakSet[Any] = weakref.WeakSet()
_shared: list[Callable[[Any], object]] = []
default_factory: Callable[[], Any] | None = None
"""Makes the app used when none was made yet (set by conveyor.celery.app)."""


def set_current(app: Any) -> None:
    global _current  # noqa: PLW0603 - the process-wide current app, as in Celery
    _current = app


def current_app() -> Any:
    """The current conveyor.celery app (a default one, "default", when none was made)."""
    if _current is None:
        assert default_factory is not None, "conveyor.celery.app is not imported"
        set_current(default_factory())
    return _current


def app_created(app: Any) -> None:
    """Registers the shared tasks on a new app."""
    _apps.add(app)
    for register in _shared:
        register(app)


def on_every_app(register: Callable[[Any], object]) -> None:
    """Runs `register` on every app, those made so far and those made later (shared_task)."""
    _shared.append(register)
    for app in list(_apps):
        register(app)
