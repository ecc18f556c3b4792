"""Cross-replica events over Redis pub/sub: completions, state changes, cancels, wake-ups,
worker control, workflow outboxes and changes.

The Lua scripts publish completions, watched tasks' state changes and cancel requests; the
servicers publish wake-ups after a submit. keys.py documents each channel's payload.
After a reconnect every local waiter and dispatcher re-checks Redis, so a message lost
while disconnected costs a re-read, never a stuck task.

On a Redis Cluster a queue's events go to its own shard channels (keys.QUEUE_EVENTS), which
stay on the primary that owns the queue's slot instead of crossing the whole cluster. A replica
hears a queue once it `follow`s it: the Store follows every queue it learns of (a submit, a
task looked up by id) before it answers, and the dispatcher every queue it serves (a worker's
stream, a poll), so nobody waits for an event from a queue this replica does not hear. The fleet-wide
channels (worker control, workflow changes) stay classic.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from conveyor_scheduler.fast_cluster import ClusterSubscription, FastCluster
from conveyor_scheduler.fast_redis import FastRedis, subscribe
from conveyor_scheduler.keys import (
    CANCEL_CHANNEL,
    CONTROL_CHANNEL,
    DONE_CHANNEL,
    QUEUE_EVENTS,
    STATE_CHANNEL,
    WAKE_CHANNEL,
    WORKFLOW_CHANNEL,
    WORKFLOW_OUTBOX_CHANNEL,
    QueueKeys,
)
from conveyor_scheduler.redis_clients import AsyncRedis

CHANNELS = (DONE_CHANNEL, WAKE_CHANNEL, STATE_CHANNEL, CANCEL_CHANNEL, CONTROL_CHANNEL, WORKFLOW_OUTBOX_CHANNEL,
            WORKFLOW_CHANNEL)
FLEET_CHANNELS = (CONTROL_CHANNEL, WORKFLOW_CHANNEL)
"""The classic channels of a cluster; each queue's other events are on its shard channels."""
DONE, WAKE, STATE, CANCEL, CONTROL, WF_OUTBOX, WF_CHANGE = (c.rpartition(":")[2].encode() for c in CHANNELS)
"""A message's kind: its channel's last segment, classic ("cv:done") or shard ("cv:{q:QUEUE}:done")."""

log = logging.getLogger(__name__)


def shard_channels(queue: str) -> tuple[str, ...]:
    keys = QueueKeys.of(queue)
    return tuple(keys.shard_channel(event) for event in QUEUE_EVENTS)


class EventBus:
    def __init__(
        self, redis: AsyncRedis, *, origin: str, fast: FastRedis | FastCluster | None = None,
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
        self._queues: dict[str, asyncio.Future[None]] = {}
        """On a cluster: the queues whose shard channels this replica hears (each with its first
        subscription, which a second `follow` of the queue waits for too)."""
        self._shards: ClusterSubscription | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="event-bus")

    async def close(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    @property
    def sharded(self) -> bool:
        """Whether queue events travel on shard channels (a Redis Cluster)."""
        return isinstance(self.fast, FastCluster)

    async def follow(self, queue: str) -> None:
        """On a cluster, hear `queue`'s events from now on (returns once Redis confirmed the
        subscription, or at once while the bus is reconnecting: the reconnect re-reads
        everything); nothing to do on one server, where every replica hears every queue."""
        if not self.sharded:
            return
        following = self._queues.get(queue)
        if following is None:
            following = self._queues[queue] = asyncio.ensure_future(self._ssubscribe(queue))
        await asyncio.shield(following)

    async def _ssubscribe(self, queue: str) -> None:
        if self._shards is not None:
            try:
                await self._shards.ssubscribe(shard_channels(queue))
            except (RedisError, OSError) as exc:  # the subscription starts over, this queue included
                log.warning("event bus could not follow queue %s (%s)", queue, exc)

    async def publish_wake(self, queue: str, due_ms: int = 0) -> None:
        payload = f"{queue}|{due_ms}|{self.origin}"
        if self.sharded:
            await self.fast.execute("SPUBLISH", QueueKeys.of(queue).shard_channel("wake"), payload)
        elif self.fast:
            await self.fast.execute("PUBLISH", WAKE_CHANNEL, payload)
        else:
            await self.redis.publish(WAKE_CHANNEL, payload)

    def _message(self, channel: bytes, raw: bytes) -> None:
        data = raw.decode()
        channel = channel.rpartition(b":")[2]
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
        listen = self._listen_cluster if self.sharded else self._listen_fast if self.fast else self._listen
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

    async def _listen_cluster(self, first: bool) -> None:
        """The fleet channels on one node, each followed queue's shard channels on its primary;
        raises when any of it is lost."""
        assert isinstance(self.fast, FastCluster)
        shards = ClusterSubscription(self.fast, self._message)
        try:
            await shards.subscribe(FLEET_CHANNELS)
            self._shards = shards  # from here `follow` subscribes a new queue itself
            done: set[str] = set()
            while todo := self._queues.keys() - done:
                for queue in todo:
                    await shards.ssubscribe(shard_channels(queue))
                done |= todo
            self._subscribed(first)
            exc = await shards.closed
            raise RedisConnectionError(f"subscription lost: {exc or 'closed'}")
        finally:
            self._shards = None
            shards.close()

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
