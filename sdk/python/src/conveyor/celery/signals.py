"""The app signals Celery programs connect to for set-up: `on_after_configure` and
`on_after_finalize` (where the periodic-tasks tutorial calls `add_periodic_task`). They are sent
once, when the worker loads the app (conveyor-worker -A), with the app as sender."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Receiver = Callable[..., Any]


class Signal:
    """A list of receivers; `connect` works bare, with options, or as a decorator."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.receivers: list[Receiver] = []

    def connect(self, receiver: Receiver | None = None, **options: Any) -> Any:
        """Adds `receiver` (returned, so it can decorate); options such as weak= are accepted."""
        if receiver is None:
            return lambda fn: self.connect(fn, **options)
        if receiver not in self.receivers:
            self.receivers.append(receiver)
        return receiver

    def disconnect(self, receiver: Receiver) -> None:
        if receiver in self.receivers:
            self.receivers.remove(receiver)

    def send(self, sender: Any, **named: Any) -> list[tuple[Receiver, Any]]:
        return [(receiver, receiver(sender=sender, signal=self, **named)) for receiver in list(self.receivers)]

    def __repr__(self) -> str:
        return f"<Signal: {self.name}>"
