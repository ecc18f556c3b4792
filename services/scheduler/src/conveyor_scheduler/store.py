"""The Redis store: one method per atomic operation, each one Lua script called by SHA."""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from importlib import resources

from redis.commands.core import AsyncScript

from conveyor_scheduler.errors import NotFound, ResourceExhausted
from conveyor_scheduler.fast_cluster import FastCluster
from conveyor_scheduler.fast_redis import FastRedis, Script
from conveyor_scheduler.ids import MAX_QUEUE_CODE, new_task_ids
from conveyor_scheduler.keys import CHANNEL_PREFIX, REGISTRY_KEYS, QueueKeys
from conveyor_scheduler.redis_clients import AsyncRedis, pipelined
from conveyor_scheduler.validation import NewTask

Record = dict[bytes, bytes]


async def _nothing(queue: str) -> None:
    return None


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True, slots=True)
class Submitted:
    id: str
    queue: str
    state: int
    duplicate: bool
    lease_token: str = ""
    """Set when the sync-match fast path leased the task at once (state ACTIVE)."""
    lease_expires_ms: int = 0
    deadline_ms: int = 0
    started_ms: int = 0


@dataclass(frozen=True, slots=True)
class Match:
    """The sync-match offer of one submit: lease up to `credit` ready-now tasks of `queue`
    straight to `worker_id` (its stream `owner`) if the queue has nothing ready they would
    overtake."""

    queue: str
    worker_id: str
    credit: int
    lease_ms: int
    owner: str = ""
    takes: Callable[[str], bool] = lambda name: True
    """Whether the worker declares a task name: a task it does not is never matched."""


@dataclass(frozen=True, slots=True)
class Claimed:
    """What one claim.lua call did."""

    records: list[Record]
    reserved_ms: int
    """The earliest start reserved for rate-limited tasks that must wait (-1 for none)."""
    parked: list[str]
    """Task names this call parked: the worker does not declare them."""
    cut: bool
    """The call stopped at its parking budget: more tasks may be ready."""
    parked_left: bool
    """The queue still holds parked tasks (that other workers may take)."""


@dataclass(frozen=True, slots=True)
class AckEntry:
    """One attempt outcome, in the shape ack.lua takes."""

    task_id: str
    token: str
    kind: str  # 's' success, 'f' failure, 'r' failure asking for a retry
    a: bytes | str = b""
    b: str = ""
    c: str = ""
    delay_ms: int = -1


def script_text(name: str) -> str:
    """A queue script is lib.lua, then its body as a function, then lib.lua's epilogue
    (activity counts, index trimming), whichever `return` the body takes; a workflow script
    (wf_*) is wf_lib.lua, then its body."""
    folder = resources.files("conveyor_scheduler") / "lua"
    body = (folder / f"{name}.lua").read_text()
    if name.startswith("wf_"):  # a workflow script: wf_lib.lua's prelude instead
        return f"{(folder / 'wf_lib.lua').read_text()}\n{body}"
    if name == "register_queue" or name.startswith(("beat_", "worker_")):  # not queue scripts: no prelude
        return body
    return (f"{(folder / 'lib.lua').read_text()}\nlocal function main()\n{body}\nend\n"
            "local reply = main()\nepilogue()\nreturn reply\n")


class Store:
    """All scheduler state lives behind this class, in Redis."""

    SCRIPTS = ("submit", "claim", "ack", "release", "extend", "adopt", "reap", "promote", "cancel", "watch",
               "requeue_dead", "purge_dead", "register_queue", "queue_stats", "list_tasks", "purge", "retry")

    def __init__(self, redis: AsyncRedis, *, result_ttl_ms: int, default_timeout_ms: int,
                 clock: Callable[[], int] = wall_clock_ms, fast: FastRedis | FastCluster | None = None,
                 wait_replicas: int = 0) -> None:
        self.redis = redis
        self.fast = fast
        """The hot path's connection (scripts and task reads), when the URL allows one."""
        self.sharded = isinstance(fast, FastCluster)
        """On a Redis Cluster each queue's events go to its own shard channels (lib.lua's ARGV[4])."""
        self.wait_replicas = wait_replicas
        """Submits and acks return once this many replicas have them (WAIT; --redis-wait-replicas)."""
        if wait_replicas and fast is None:
            raise ValueError("--redis-wait-replicas needs a redis://, rediss://, unix:// or cluster URL")
        self.on_queue: Callable[[str], Awaitable[None]] = _nothing
        """Awaited when this replica first meets a queue (a submit, a task looked up by id): the
        event bus follows it (bus.py)."""
        self.result_ttl_ms = result_ttl_ms
        self.default_timeout_ms = default_timeout_ms
        self.clock = clock
        self._scripts: dict[str, AsyncScript | Script] = {
            name: Script(fast, script_text(name)) if fast else redis.register_script(script_text(name))
            for name in self.SCRIPTS
        }
        self._codes: dict[str, int] = {}
        self._names: dict[int, str] = {}
        self._keys: dict[str, QueueKeys] = {}

    async def aclose(self) -> None:
        if self.fast is not None:
            await self.fast.aclose()

    # -- queues ----------------------------------------------------------------------

    def keys(self, queue: str) -> QueueKeys:
        keys = self._keys.get(queue)
        if keys is None:
            keys = self._keys[queue] = QueueKeys.of(queue)
        return keys

    async def queue_code(self, queue: str) -> int:
        code = self._codes.get(queue)
        if code is None:
            code = int(await self._scripts["register_queue"](keys=REGISTRY_KEYS, args=[queue, MAX_QUEUE_CODE]))
            if code == 0:
                raise ResourceExhausted(f"no queue numbers left for queue {queue!r} (limit {MAX_QUEUE_CODE})")
            if self._names.get(code, queue) != queue:  # the registry was wiped under us
                self._codes.clear()
                self._names.clear()
            self._codes[queue], self._names[code] = code, queue
            await self.on_queue(queue)
        return code

    async def queue_name(self, code: int) -> str:
        name = self._names.get(code)
        if name is None:
            raw = await self.redis.hget(REGISTRY_KEYS[1], str(code))
            if raw is None:
                raise NotFound("no such task (its queue is unknown)")
            name = raw.decode()
            self._names[code], self._codes[name] = name, code
            await self.on_queue(name)
        return name

    async def queues(self) -> list[str]:
        raw = await self.redis.hkeys(REGISTRY_KEYS[0])
        return sorted(q.decode() for q in raw)

    # -- the task life cycle -----------------------------------------------------------

    def _head(self, queue: str, now: int) -> tuple[tuple[str, ...], list[object]]:
        keys = self.keys(queue)
        channels = keys.prefix[:-1] if self.sharded else CHANNEL_PREFIX  # "cv:{q:QUEUE}": shard channels
        return keys.script_keys, [keys.prefix, now, self.result_ttl_ms, channels]

    async def submit(self, tasks: Sequence[NewTask], matches: Sequence[Match] = (), wake_origin: str = ""
                     ) -> list[Submitted]:
        """Stores validated tasks; one atomic script call per queue, pipelined. `matches`
        offer workers for the sync-match fast path; a queue that got a QUEUED task has
        "queue|0|wake_origin" published on the wake channel (when wake_origin is set)."""
        now = self.clock()
        offers = {m.queue: m for m in matches}
        by_queue: dict[str, list[int]] = defaultdict(list)
        for index, task in enumerate(tasks):
            by_queue[task.queue].append(index)
        ids: list[str] = [""] * len(tasks)
        for queue, indexes in by_queue.items():
            fresh = new_task_ids(await self.queue_code(queue), len(indexes), now)
            for index, task_id in zip(indexes, fresh, strict=True):
                ids[index] = task_id
        calls = []
        for queue, indexes in by_queue.items():
            keys, args = self._head(queue, now)
            offer = offers.get(queue)
            args += [offer.worker_id, offer.credit, offer.lease_ms, os.urandom(6).hex()] if offer else ["", 0, 0, ""]
            args += [f"{queue}|0|{wake_origin}" if wake_origin else "", offer.owner if offer else ""]
            for index in indexes:
                t = tasks[index]
                args += [ids[index], t.priority, t.due_ms, t.idempotency_key, t.idempotency_window_ms,
                         t.timeout_ms if t.matchable and offer and offer.takes(t.name) else 0, len(t.fields) // 2,
                         *t.fields]
            calls.append((keys, args))
        replies = await self._run("submit", calls, durable=True)
        out: list[Submitted | None] = [None] * len(tasks)
        for (queue, indexes), reply in zip(by_queue.items(), replies, strict=True):
            for n, index in enumerate(indexes):
                r = reply[6 * n:6 * n + 6]
                out[index] = Submitted(r[0].decode(), queue, int(r[1]), r[2] == 1, r[3].decode(), int(r[4]),
                                       int(r[5]), now)
        return out  # type: ignore[return-value]

    async def _run(self, script: str, calls: list[tuple[tuple[str, ...], list[object]]], durable: bool = False
                   ) -> list[object]:
        """Runs one script per (keys, args): directly for one call (a pipeline would add a
        SCRIPT EXISTS round trip), pipelined for several queues. `durable`: the caller is told of
        it, so with wait_replicas it returns only once the replicas have it."""
        run = self._scripts[script]
        extra = {"replicas": self.wait_replicas} if durable and self.wait_replicas else {}
        if len(calls) == 1:
            keys, args = calls[0]
            return [await run(keys=keys, args=args, **extra)]
        if self.fast:  # one connection (per node): concurrent calls are pipelined anyway
            return list(await asyncio.gather(*(run(keys=k, args=a, **extra) for k, a in calls)))
        return await pipelined(self.redis, run, calls)  # type: ignore[arg-type]

    async def claim(self, queue: str, count: int, worker_id: str, lease_ms: int, queue_rate: str = "",
                    owner: str = "", names: Sequence[str] = ()) -> Claimed:
        """Leases up to `count` ready tasks of `queue` to `worker_id` (held by the stream
        `owner`; '' for a polled lease), of the task `names` it declares (none: any name)."""
        keys, args = self._head(queue, self.clock())
        args += [count, lease_ms, os.urandom(6).hex(), worker_id, self.default_timeout_ms, queue_rate, owner, *names]
        soonest, reply, parked, cut, parked_left = await self._scripts["claim"](keys=keys, args=args)
        return Claimed([record_of(rec) for rec in reply], int(soonest), [n.decode() for n in parked], cut == 1,
                       parked_left == 1)

    async def ack(self, entries: Sequence[tuple[str, AckEntry]]) -> tuple[list[tuple[int, int, int]], int]:
        """Records (queue, entry) outcomes; returns (status, state, attempt) per entry in
        order, and the time recorded as their finish (ms)."""
        now = self.clock()
        by_queue: dict[str, list[int]] = defaultdict(list)
        for index, (queue, _) in enumerate(entries):
            by_queue[queue].append(index)
        calls = []
        for queue, indexes in by_queue.items():
            keys, args = self._head(queue, now)
            for index in indexes:
                e = entries[index][1]
                args += [e.task_id, e.token, e.kind, e.a, e.b, e.c, e.delay_ms, random.random()]
            calls.append((keys, args))
        replies = await self._run("ack", calls, durable=True)
        out: list[tuple[int, int, int]] = [(0, 0, 0)] * len(entries)
        for indexes, reply in zip(by_queue.values(), replies, strict=True):
            for n, index in enumerate(indexes):
                out[index] = (int(reply[3 * n]), int(reply[3 * n + 1]), int(reply[3 * n + 2]))
        return out, now

    async def release(self, queue: str, leases: Iterable[tuple[str, str]], owner: str = "") -> int:
        """Hands back the leases that the stream `owner` ('' for polled ones) still owns."""
        keys, args = self._head(queue, self.clock())
        args.append(owner)
        for task_id, token in reversed(list(leases)):  # each goes to the front: keep their order
            args += [task_id, token]
        return int(await self._scripts["release"](keys=keys, args=args))

    async def extend(self, queue: str, leases: Iterable[tuple[str, str, int]], owner: str = "") -> list[int]:
        """Pushes expiries out (never shortens them); with `owner`, only that stream's leases."""
        keys, args = self._head(queue, self.clock())
        args.append(owner)
        for task_id, token, extend_ms in leases:
            args += [task_id, token, extend_ms]
        return [int(v) for v in await self._scripts["extend"](keys=keys, args=args)]

    async def adopt(self, queue: str, leases: Sequence[tuple[str, str]], owner: str, worker_id: str,
                    lease_ms: int) -> list[bool]:
        """Makes the stream `owner` the one owner of leases its worker still holds; per lease,
        whether it was still current."""
        keys, args = self._head(queue, self.clock())
        args += [owner, worker_id, lease_ms]
        for task_id, token in leases:
            args += [task_id, token]
        return [v == 1 for v in await self._scripts["adopt"](keys=keys, args=args)]

    async def reap(self, queue: str, limit: int = 500) -> tuple[int, int, bool]:
        """(leases handled, earliest remaining lease expiry ms or -1, more index trimming due)."""
        keys, args = self._head(queue, self.clock())
        handled, nxt, more = await self._scripts["reap"](keys=keys, args=[*args, limit, random.random()])
        return int(handled), int(nxt), more == 1

    async def promote(self, queue: str, limit: int = 1000) -> tuple[int, int]:
        keys, args = self._head(queue, self.clock())
        promoted, nxt = await self._scripts["promote"](keys=keys, args=[*args, limit])
        return int(promoted), int(nxt)

    async def cancel(self, queue: str, task_id: str) -> tuple[int, str]:
        """Returns (state after the call, worker id holding it if running)."""
        return (await self.cancel_many(queue, [task_id]))[0]

    async def cancel_many(self, queue: str, task_ids: Sequence[str]) -> list[tuple[int, str]]:
        """Cancels tasks of one queue; per task (state after the call, worker id if running)."""
        keys, args = self._head(queue, self.clock())
        reply = await self._scripts["cancel"](keys=keys, args=[*args, *task_ids])
        return [(int(state), worker.decode() if isinstance(worker, bytes) else str(worker)) for state, worker in reply]

    async def run(self, script: str, queue: str, *args: object) -> object:
        """Runs queue script `script` (lib.lua's KEYS and first ARGV, then `args`) on `queue`:
        the door for the operations modules (inspection.py, queue_control.py)."""
        keys, head = self._head(queue, self.clock())
        return await self._scripts[script](keys=keys, args=[*head, *args])

    async def watch(self, queue: str, task_id: str) -> Record:
        """Marks the task watched (state changes get published) and returns its record."""
        keys, args = self._head(queue, self.clock())
        return record_of(await self._scripts["watch"](keys=keys, args=[*args, task_id]))

    async def dead_letters(self, queue: str, offset: int, limit: int) -> tuple[list[tuple[str, Record]], int]:
        keys = self.keys(queue)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.zrange(keys.dead, offset, offset + limit - 1)
            pipe.zcard(keys.dead)
            raw_ids, total = await pipe.execute()
            ids = [i.decode() for i in raw_ids]
            for task_id in ids:
                pipe.hgetall(keys.task(task_id))
            records = await pipe.execute() if ids else []
        return list(zip(ids, records, strict=True)), int(total)

    async def requeue_dead(self, queue: str, task_ids: Sequence[str]) -> int:
        """Requeues the given dead letters (all of them when task_ids is empty)."""
        return await self._dead_op("requeue_dead", queue, task_ids)

    async def purge_dead(self, queue: str, task_ids: Sequence[str]) -> int:
        """Deletes the given dead letters (all of them when task_ids is empty)."""
        return await self._dead_op("purge_dead", queue, task_ids)

    async def _dead_op(self, script: str, queue: str, task_ids: Sequence[str]) -> int:
        total = 0
        while True:
            keys, args = self._head(queue, self.clock())
            done = int(await self._scripts[script](keys=keys, args=[*args, *(task_ids or ["*"])]))
            total += done
            if task_ids or done < 1000:
                return total

    async def get(self, queue: str, task_id: str) -> Record:
        if self.fast:
            return record_of(await self.fast.execute("HGETALL", self.keys(queue).task(task_id)))
        return await self.redis.hgetall(self.keys(queue).task(task_id))

    async def has_ready(self, queue: str) -> bool:
        """Whether the queue's ready lists or parked zsets hold anything (tombstones included)."""
        keys = self.keys(queue)
        probe = (*keys.ready, keys.parked_names)
        if self.fast:
            return int(await self.fast.execute("EXISTS", *probe)) > 0
        return int(await self.redis.exists(*probe)) > 0

    async def strings(self, keys: Sequence[str]) -> list[bytes | None]:
        """MGET of keys of one hash tag (None for a missing key)."""
        if self.fast:
            return list(await self.fast.execute("MGET", *keys))
        return list(await self.redis.mget(keys))

    async def states(self, tasks: Sequence[tuple[str, str]]) -> list[int]:
        """The states of (queue, task id) pairs, in one pipelined round trip (0: no record)."""
        if self.fast:
            raw = await asyncio.gather(*(self.fast.execute("HGET", self.keys(q).task(t), "st") for q, t in tasks))
        else:
            async with self.redis.pipeline(transaction=False) as pipe:
                for queue, task_id in tasks:
                    pipe.hget(self.keys(queue).task(task_id), "st")
                raw = await pipe.execute()
        return [int(v or 0) for v in raw]

    async def get_many(self, tasks: Sequence[tuple[str, str]]) -> list[Record]:
        """The records of (queue, task id) pairs, in one pipelined round trip."""
        if len(tasks) == 1 or self.fast:
            return list(await asyncio.gather(*(self.get(queue, task_id) for queue, task_id in tasks)))
        async with self.redis.pipeline(transaction=False) as pipe:
            for queue, task_id in tasks:
                pipe.hgetall(self.keys(queue).task(task_id))
            return list(await pipe.execute())


def record_of(flat: list[bytes]) -> Record:
    """A record from a flat [field, value, ...] reply (HGETALL, or a script's)."""
    return dict(zip(flat[::2], flat[1::2], strict=True))
