"""Finds the app to run from `conveyor-worker APP` or `-A APP`, as Celery's `-A` does.

`module:attribute` names it. A bare `module` is searched: its `app`, then its `celery`, then the
one app instance among its attributes, then its `celery` submodule (a package `proj` with
`proj/celery.py`). The app is a conveyor `App`, or a conveyor.celery `Celery`, which is
finalized (its include and autodiscovered modules imported, its beat schedule declared) and
whose conveyor App is returned.
"""

from __future__ import annotations

import importlib
import os
import sys
from types import ModuleType
from typing import Any

from conveyor import App
from conveyor.celery.app import Celery, WorkerApp

APP_TYPES = (App, Celery)


def _instances(module: ModuleType) -> dict[str, Any]:
    return {name: value for name, value in vars(module).items()
            if isinstance(value, APP_TYPES) and not name.startswith("_")}


def _find(module: ModuleType, ref: str) -> Any:
    for attr in ("app", "celery"):
        value = getattr(module, attr, None)
        if isinstance(value, APP_TYPES):
            return value
    found = _instances(module)
    if len(found) == 1:
        return next(iter(found.values()))
    if len(found) > 1:
        raise TypeError(f"{ref!r} holds several apps ({', '.join(sorted(found))}): name one, {ref}:NAME")
    if hasattr(module, "__path__"):  # a package: Celery looks in its celery submodule
        try:
            sub = importlib.import_module(f"{module.__name__}.celery")
        except ModuleNotFoundError as exc:
            if exc.name != f"{module.__name__}.celery":
                raise
        else:
            return _find(sub, f"{ref}.celery")
    raise TypeError(f"{ref!r} holds no conveyor.App or conveyor.celery.Celery (looked for 'app', 'celery', "
                    "a single app instance, and a celery submodule): name it, MODULE:ATTRIBUTE")


def load_app(ref: str) -> App:
    """The conveyor App `ref` names (a Celery app's, after finalizing it)."""
    module_name, _, attr = ref.partition(":")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    module = importlib.import_module(module_name)
    if attr:
        app = getattr(module, attr, None)
        if not isinstance(app, APP_TYPES):
            raise TypeError(f"{ref!r} is not a conveyor.App or conveyor.celery.Celery (got {type(app).__name__})")
    else:
        app = _find(module, ref)
    return app.finalize() if isinstance(app, Celery) else app


def app_scheduler(app: App) -> str | None:
    """The scheduler a Celery app's broker URL names (a worker without --scheduler uses it, as a
    Celery worker uses the app's broker); None for a conveyor App."""
    return app.celery.scheduler if isinstance(app, WorkerApp) else None
