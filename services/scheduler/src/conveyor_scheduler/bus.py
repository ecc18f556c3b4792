"""Cross-replica events over Redis pub/sub: completions, state changes, cancels, wake-ups.

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
from conveyor_scheduler.keys import CANCEL_CHANNEL, DONE_CHANNEL, STATE_CHANNEL, WAKE_CHANNEL

CHANNELS = (DONE_CHANNEL, WAKE_CHANNEL, STATE_CHANNEL, CANCEL_CHANNEL)
DONE, WAKE, STATE, CANCEL = (c.encode() for c in CHANNELS)

log = logging.getLogger(__name__)


class EventBus:
    def __init__(
        self, redis: Redis, *, origin: str, fast: FastRedis | None = None,
        on_done: Callable[[str], None], on_wake: Callable[[str, int], None],
        on_state: Callable[[str], None], on_cancel: Callable[[str, str], None], on_reconnect: Callable[[], None],
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
        self.on_reconnect = on_reconnect
        self.ready = asyncio.Event()
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

    async def _run(self) -> None:
        if self.fast:
            await self._run_fast(self.fast)
            return
        backoff = 0.1
        first = True
        while True:
            pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(*CHANNELS)
                self.ready.set()
                if not first:
                    self.on_reconnect()
                first, backoff = False, 0.1
                while True:
                    msg = await pubsub.get_message(timeout=None)
                    if msg is not None:
                        self._message(msg["channel"], msg["data"])
            except (RedisError, OSError) as exc:
                log.warning("event bus lost Redis (%s); reconnecting in %.1fs", exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                first = False
            finally:
                with contextlib.suppress(RedisError, OSError):
                    await pubsub.aclose()

    async def _run_fast(self, fast: FastRedis) -> None:
        backoff = 0.1
        first = True
        while True:
            close: Callable[[], None] | None = None
            try:
                closed, close = await subscribe(fast, CHANNELS, self._message)
                self.ready.set()
                if not first:
                    self.on_reconnect()
                first, backoff = False, 0.1
                exc = await closed
                raise RedisConnectionError(f"subscription lost: {exc or 'closed'}")
            except (RedisError, OSError) as exc:
                log.warning("event bus lost Redis (%s); reconnecting in %.1fs", exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                first = False
            finally:
                if close is not None:
                    close()
