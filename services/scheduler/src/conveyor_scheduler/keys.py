"""Every Redis key name Conveyor uses, built in one place.

All state of one queue shares the hash tag ``{q:NAME}`` so each queue lives in one
Redis Cluster slot; the queue registry shares the tag ``{cv}``.
"""

from __future__ import annotations

from dataclasses import dataclass

PRIORITY_LEVELS = 10
CHANNEL_PREFIX = "cv"
DONE_CHANNEL = "cv:done"
"""Payload: the id of a task that finished (published by the Lua scripts)."""
STATE_CHANNEL = "cv:state"
"""Payload: "id|state|attempt" for every state change of a watched task."""
CANCEL_CHANNEL = "cv:cancel"
"""Payload: "id|worker id" when a running task is asked to stop."""
WAKE_CHANNEL = "cv:wake"
"""Payload: "queue|0|replica" (tasks are ready) or "queue|due-ms|replica" (a task is due then),
published by `replica` (the publisher ignores its own); plain "queue" and "queue|due-ms" are read too."""
REGISTRY_KEYS = ("cv:{cv}:queues", "cv:{cv}:queue-names", "cv:{cv}:queue-seq")
BEAT_CHANNEL = "cv:beat"
"""Payload: a schedule id whose definition changed, or "released" when the beat leader steps down."""
BEAT_PREFIX = "cv:{beat}:"
"""All beat state shares the tag {beat}: schedule hashes BEAT_PREFIX + "s:" + id and the keys below."""
BEAT_DUE = BEAT_PREFIX + "due"
"""Sorted set: schedule id -> next fire ms (active schedules only)."""
BEAT_INDEX = BEAT_PREFIX + "ids"
"""Sorted set of every schedule id, all scored 0 (listed in id order with ZRANGEBYLEX)."""
BEAT_LEADER = BEAT_PREFIX + "leader"
"""String: the beat leader's lease token "SCHEDULER_ID/RANDOM", with the lease as its TTL."""


def schedule_key(schedule_id: str) -> str:
    return f"{BEAT_PREFIX}s:{schedule_id}"


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
        return cls(queue, prefix, (*ready, f"{prefix}s", f"{prefix}a", f"{prefix}d", f"{prefix}pn"))

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

    @property
    def parked_names(self) -> str:
        """Set of the task names that have parked tasks (name-aware dispatch, lib.lua)."""
        return self.script_keys[PRIORITY_LEVELS + 3]

    def parked(self, task_name: str) -> str:
        """Zset of the parked tasks of one name, scored 9 - priority."""
        return f"{self.prefix}p:{task_name}"
