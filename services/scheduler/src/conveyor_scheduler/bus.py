"""Cross-replica events over Redis pub/sub: completions, state changes, cancels, wake-ups,
worker control, workflow outboxes and changes.

The Lua scripts publish completions, watched tasks' state changes and cancel requests; the
servicers publish wake-ups after a submit. keys.py documents each channel's payload.
After a reconnect every local waiter and dispatcher re-checks Redis, so a message lost
while disconnected costs a re-read, never a stuck task.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from conveyor_scheduler.fast_redis import FastRedis, subscribe
from conveyor_scheduler.keys import (
    CANCEL_CHANNEL,
    CONTROL_CHANNEL,
    DONE_CHANNEL,
    STATE_CHANNEL,
    WAKE_CHANNEL,
    WORKFLOW_CHANNEL,
    WORKFLOW_OUTBOX_CHANNEL,
)

CHANNELS = (DONE_CHANNEL, WAKE_CHANNEL, STATE_CHANNEL, CANCEL_CHANNEL, CONTROL_CHANNEL, WORKFLOW_OUTBOX_CHANNEL,
            WORKFLOW_CHANNEL)
DONE, WAKE, STATE, CANCEL, CONTROL, WF_OUTBOX, WF_CHANGE = (c.encode() for c in CHANNELS)

log = logging.getLogger(__name__)


class EventBus:
    def __init__(
        self, redis: Redis, *, origin: str, fast: FastRedis | None = None,
        on_done: Callable[[str], None], on_state: Callable[[str], None], on_cancel: Callable[[str, str], None],
        on_reconnect: Callable[[], None], on_wake: Callable[[str, int], None] = lambda queue, due_ms: None,
        on_control: Callable[[str], None] = lambda payload: None,
        on_outbox: Callable[[str], None] = lambda prefix: None,
        on_workflow: Callable[[str], None] = lambda workflow_id: None,
    ) -> None:
        self.redis = redis
        self.fast = fast
        """When set, the subscription is a hiredis connection whose messages are handled
        right as they are parsed (the redis-py pub/sub loop costs ~50 µs per message)."""
        self.origin = origin
        """This replica's id: wake-ups it published itself are not acted on twice."""
        self.on_done = on_done
        self.on_state = on_state
        self.on_cancel = on_cancel
        self.on_wake = on_wake
        """Another replica's wake-up: (queue, 0) when tasks are ready, (queue, due ms) when one is due."""
        self.on_reconnect = on_reconnect
        self.on_control = on_control
        """A worker control request (control.py): "worker id|owner|action|arg"."""
        self.on_outbox = on_outbox
        """A queue's workflow outbox got an entry: its key prefix "cv:{q:QUEUE}:"."""
        self.on_workflow = on_workflow
        """A workflow changed: its id."""
        self.ready = asyncio.Event()
        self._backoff = 0.1
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="event-bus")

    async def close(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def publish_wake(self, queue: str, due_ms: int = 0) -> None:
        payload = f"{queue}|{due_ms}|{self.origin}"
        if self.fast:
            await self.fast.execute("PUBLISH", WAKE_CHANNEL, payload)
        else:
            await self.redis.publish(WAKE_CHANNEL, payload)

    def _message(self, channel: bytes, raw: bytes) -> None:
        data = raw.decode()
        if channel == DONE:
            self.on_done(data)
        elif channel == WAKE:
            queue, _, rest = data.partition("|")
            due, _, origin = rest.partition("|")
            if origin != self.origin:
                self.on_wake(queue, int(due or 0))
        elif channel == STATE:
            self.on_state(data)
        elif channel == CANCEL:
            task_id, _, worker = data.partition("|")
            self.on_cancel(task_id, worker)
        elif channel == CONTROL:
            self.on_control(data)
        elif channel == WF_OUTBOX:
            self.on_outbox(data)
        elif channel == WF_CHANGE:
            self.on_workflow(data)

    async def _run(self) -> None:
        """Keeps one subscription up; after a reconnect, on_reconnect makes everyone re-read."""
        listen = self._listen_fast if self.fast else self._listen
        self._backoff, first = 0.1, True
        while True:
            try:
                await listen(first)
            except (RedisError, OSError) as exc:
                log.warning("event bus lost Redis (%s); reconnecting in %.1fs", exc, self._backoff)
                await asyncio.sleep(self._backoff)
                self._backoff = min(self._backoff * 2, 5.0)
            first = False

    def _subscribed(self, first: bool) -> None:
        self.ready.set()
        self._backoff = 0.1
        if not first:
            self.on_reconnect()

    async def _listen(self, first: bool) -> None:
        """redis-py's pub/sub (URLs FastRedis does not take); raises when the connection is lost."""
        pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
        try:
            await pubsub.subscribe(*CHANNELS)
            self._subscribed(first)
            while True:
                msg = await pubsub.get_message(timeout=None)
                if msg is not None:
                    self._message(msg["channel"], msg["data"])
        finally:
            with contextlib.suppress(RedisError, OSError):
                await pubsub.aclose()

    async def _listen_fast(self, first: bool) -> None:
        """A hiredis subscription whose messages are handled as parsed; raises when it is lost."""
        assert self.fast is not None
        closed, close = await subscribe(self.fast, CHANNELS, self._message)
        try:
            self._subscribed(first)
            exc = await closed
            raise RedisConnectionError(f"subscription lost: {exc or 'closed'}")
        finally:
            close()
