"""Every Redis key name Conveyor uses, built in one place.

All state of one queue shares the hash tag ``{q:NAME}`` so each queue lives in one
Redis Cluster slot; the queue registry shares the tag ``{cv}``.
"""

from __future__ import annotations

from dataclasses import dataclass

PRIORITY_LEVELS = 10
DONE_CHANNEL = "cv:done"
WAKE_CHANNEL = "cv:wake"
REGISTRY_KEYS = ("cv:{cv}:queues", "cv:{cv}:queue-names", "cv:{cv}:queue-seq")


@dataclass(frozen=True, slots=True)
class QueueKeys:
    """Key names of one queue, in the KEYS order every queue script expects (lib.lua)."""

    queue: str
    prefix: str
    script_keys: tuple[str, ...]

    @classmethod
    def of(cls, queue: str) -> QueueKeys:
        prefix = f"cv:{{q:{queue}}}:"
        ready = tuple(f"{prefix}r:{p}" for p in range(PRIORITY_LEVELS))
        return cls(queue, prefix, (*ready, f"{prefix}s", f"{prefix}a", f"{prefix}d"))

    def task(self, task_id: str) -> str:
        return f"{self.prefix}t:{task_id}"

    @property
    def ready(self) -> tuple[str, ...]:
        return self.script_keys[:PRIORITY_LEVELS]

    @property
    def scheduled(self) -> str:
        return self.script_keys[PRIORITY_LEVELS]

    @property
    def active(self) -> str:
        return self.script_keys[PRIORITY_LEVELS + 1]

    @property
    def dead(self) -> str:
        return self.script_keys[PRIORITY_LEVELS + 2]
