"""Finds the user's App from a 'module:attribute' reference."""

from __future__ import annotations

import importlib
import os
import sys

from conveyor import App


def load_app(ref: str) -> App:
    module_name, _, attr = ref.partition(":")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    module = importlib.import_module(module_name)
    app = getattr(module, attr or "app", None)
    if not isinstance(app, App):
        raise TypeError(f"{ref!r} is not a conveyor.App (got {type(app).__name__})")
    return app
