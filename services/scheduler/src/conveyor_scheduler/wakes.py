"""Wake-ups: telling whoever should act that a queue's tasks are ready, or due at a time.

On this replica that is the queue's dispatch loop (ready) or the promoter (due); the other
replicas hear a `cv:wake` publish (bus.py), which reaches their `heard`. A publish the caller
must not wait for (a submit that registers result waiters right after it) goes out in the
background: the other replicas' periodic sweep and rescan cover one that is lost.
"""

from __future__ import annotations

import logging

from redis.exceptions import RedisError

from conveyor_scheduler.background import Background
from conveyor_scheduler.bus import EventBus
from conveyor_scheduler.dispatch import Dispatcher
from conveyor_scheduler.maintenance import Maintenance

log = logging.getLogger(__name__)
MAX_PARKED_LOGGED = 10_000
"""Most (queue, task name) pairs whose parking is remembered as logged."""


class Wakes:
    def __init__(self, dispatcher: Dispatcher, maintenance: Maintenance, bus: EventBus) -> None:
        self.dispatcher = dispatcher
        self.maintenance = maintenance
        self.bus = bus
        self._background = Background()
        self._parked_logged: set[tuple[str, str]] = set()

    def ready(self, queue: str) -> None:
        """Tasks of `queue` may be ready: this replica's dispatch loop looks."""
        self.dispatcher.wake(queue)

    def ready_everywhere(self, queue: str) -> None:
        """Tasks of `queue` are ready (promoted, reaped, resumed, retried): wake dispatch here and on
        the other replicas."""
        self.dispatcher.wake(queue)
        self.publish_soon(queue)

    async def publish(self, queue: str) -> None:
        """Tells the other replicas that tasks of `queue` are ready, once Redis has the message."""
        await self.bus.publish_wake(queue)

    def publish_soon(self, queue: str, due_ms: int = 0) -> None:
        """Tells the other replicas about `queue` without making the caller wait for Redis."""
        async def publish() -> None:
            try:
                await self.bus.publish_wake(queue, due_ms)
            except (RedisError, OSError) as exc:  # their periodic sweep and rescan cover it
                log.info("could not tell the other replicas about queue %s: %s", queue, exc)

        self._background.spawn(publish())

    def heard(self, queue: str, due_ms: int) -> None:
        """Another replica's wake-up: tasks are ready, or one is due at `due_ms`."""
        if due_ms:
            self.maintenance.schedule(queue, due_ms)
        else:
            self.dispatcher.wake(queue)

    def parked(self, queue: str, names: list[str]) -> None:
        """A claim parked tasks its worker does not run: say so once per name, and let the other
        replicas' workers look (one of them may declare the name)."""
        for name in names:
            if (queue, name) not in self._parked_logged and len(self._parked_logged) < MAX_PARKED_LOGGED:
                self._parked_logged.add((queue, name))
                log.warning("queue %s: tasks named %s wait: the workers taking from it do not declare that name",
                            queue, name)
        self.publish_soon(queue)
