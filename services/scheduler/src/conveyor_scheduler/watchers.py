"""WatchTask listeners: state changes of watched tasks, in order, from Redis pub/sub."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class StateChange:
    state: int
    attempt: int
    seq: int
    """Per-task sequence number; 0 asks the listener to re-read the task (after a reconnect)."""


RESYNC = StateChange(0, 0, 0)


class Watchers:
    def __init__(self) -> None:
        self._listeners: dict[str, set[asyncio.Queue[StateChange]]] = {}

    def add(self, task_id: str) -> asyncio.Queue[StateChange]:
        q: asyncio.Queue[StateChange] = asyncio.Queue()
        self._listeners.setdefault(task_id, set()).add(q)
        return q

    def remove(self, task_id: str, q: asyncio.Queue[StateChange]) -> None:
        listeners = self._listeners.get(task_id)
        if listeners is not None:
            listeners.discard(q)
            if not listeners:
                del self._listeners[task_id]

    def on_message(self, payload: str) -> None:
        """Handles "id|state|attempt|seq" from the state channel."""
        task_id, state, attempt, seq = payload.split("|")
        for q in self._listeners.get(task_id, ()):
            q.put_nowait(StateChange(int(state), int(attempt), int(seq)))

    def resync_all(self) -> None:
        for listeners in self._listeners.values():
            for q in listeners:
                q.put_nowait(RESYNC)
