"""ListTasks and the bulk actions' selection: walks the per-queue task indexes (the
stream cv:{q:QUEUE}:x, one entry per submit call, newest first; list_tasks.lua filters each
task) and merges the queues into one order, (entry id, index in the entry, queue) descending.

A cursor is the position the walk reached: every entry above it, in every queue, has been
looked at. It is opaque to callers and bound to the filter it was made for.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import re
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

from conveyor.v1 import admin_service_pb2 as pb
from conveyor.v1 import task_pb2
from conveyor_scheduler.errors import InvalidArgument, NotFound
from conveyor_scheduler.records import to_task
from conveyor_scheduler.store import Record, Store, record_of
from conveyor_scheduler.validation import check_name, check_queue, timestamp_ms

SCAN_BUDGET = 5_000
"""Tasks one call examines per queue at most (a few ms of Redis time)."""
MAX_PAGE = 1_000
MAX_STATES = 8
_ENTRY_RE = re.compile(r"\d{1,15}-\d{1,19}:\d{1,5}")
_CURSOR_VERSION = "1"


@dataclass(frozen=True, slots=True)
class TaskQuery:
    """A validated TaskFilter."""

    queues: tuple[str, ...]
    states: str
    """As list_tasks.lua takes them: ",2,5," ('' for any)."""
    name: str
    name_prefix: str
    worker_id: str
    after_ms: int
    """0: no lower bound."""
    before_ms: int
    """0: no upper bound."""
    digest: str
    """Binds cursors to this filter."""


@dataclass(frozen=True, slots=True, order=True)
class Position:
    """A point of the merged walk: (entry ms, entry seq, index of the task in the entry, queue);
    the walk goes downwards."""

    ms: int
    seq: int
    index: int
    queue: str

    @property
    def entry(self) -> str:
        return f"{self.ms}-{self.seq}"


def parse_filter(f: pb.TaskFilter, known_queues: Sequence[str], *, allowed_states: frozenset[int] | None = None,
                 states_required: bool = False) -> TaskQuery:
    """Checks a TaskFilter; INVALID_ARGUMENT or NOT_FOUND naming the field."""
    if f.queue:
        queue = check_queue(f.queue, "filter.queue")
        if queue not in known_queues:
            raise NotFound(f"filter.queue: no queue {queue!r} (a queue is known from its first task)")
        queues: tuple[str, ...] = (queue,)
    else:
        queues = tuple(known_queues)
    if len(f.states) > MAX_STATES:
        raise InvalidArgument("filter.states", f"at most {MAX_STATES} states, got {len(f.states)}")
    if states_required and not f.states:
        raise InvalidArgument("filter.states", "name the states to act on")
    for i, state in enumerate(f.states):
        if state not in task_pb2.TaskState.values() or state == task_pb2.TASK_STATE_UNSPECIFIED:
            raise InvalidArgument(f"filter.states[{i}]", f"{state} is not a task state")
        if allowed_states is not None and state not in allowed_states:
            names = ", ".join(task_pb2.TaskState.Name(s).removeprefix("TASK_STATE_") for s in sorted(allowed_states))
            raise InvalidArgument(f"filter.states[{i}]",
                                  f"{task_pb2.TaskState.Name(state).removeprefix('TASK_STATE_')} is not allowed "
                                  f"here (only {names})")
    if f.name and f.name_prefix:
        raise InvalidArgument("filter.name_prefix", "set at most one of name and name_prefix")
    if f.name:
        check_name(f.name, "filter.name")
    if f.name_prefix:
        check_name(f.name_prefix, "filter.name_prefix")
    if f.worker_id:
        check_name(f.worker_id, "filter.worker_id")
    after = timestamp_ms(f.submitted_after, "filter.submitted_after") if f.HasField("submitted_after") else 0
    before = timestamp_ms(f.submitted_before, "filter.submitted_before") if f.HasField("submitted_before") else 0
    if f.HasField("submitted_before") and before <= after:
        raise InvalidArgument("filter.submitted_before", "must be after filter.submitted_after "
                                                         "(the range is empty)")
    states = "," + ",".join(str(s) for s in sorted(set(f.states))) + "," if f.states else ""
    digest = hashlib.sha256(f.SerializeToString(deterministic=True)).hexdigest()[:16]
    return TaskQuery(queues, states, f.name, f.name_prefix, f.worker_id, after, before, digest)


def encode_cursor(query: TaskQuery, at: Position) -> str:
    body = "|".join((_CURSOR_VERSION, query.digest, f"{at.entry}:{at.index}", at.queue))
    check = hashlib.sha256(body.encode()).hexdigest()[:12]
    return base64.urlsafe_b64encode(f"{body}|{check}".encode()).decode().rstrip("=")


def decode_cursor(query: TaskQuery, cursor: str) -> Position:
    """The position a cursor holds; INVALID_ARGUMENT naming `cursor` when it was not made by
    encode_cursor, or was made for another filter."""
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        version, digest, entry, queue, check = text.split("|")
    except ValueError:
        raise InvalidArgument("cursor", "is not a cursor this API returned") from None
    body = "|".join((version, digest, entry, queue))
    if (version != _CURSOR_VERSION or check != hashlib.sha256(body.encode()).hexdigest()[:12]
            or not _ENTRY_RE.fullmatch(entry)):
        raise InvalidArgument("cursor", "is not a cursor this API returned")
    if digest != query.digest:
        raise InvalidArgument("cursor", "was made for another filter: repeat the filter of the first page")
    at, index = entry.split(":")
    ms, seq = at.split("-")
    return Position(int(ms), int(seq), int(index), queue)


def _position(entry: bytes | str, index: int, queue: str) -> Position:
    ms, seq = (entry.decode() if isinstance(entry, bytes) else entry).split("-")
    return Position(int(ms), int(seq), int(index), queue)


@dataclass(frozen=True, slots=True)
class Page:
    found: list[tuple[Position, str, Record | None]]
    """(position, task id, record or None when only ids were asked for), newest first."""
    next: Position | None
    """Where the next page starts (exclusive); None when the walk is done."""


class TaskSearch:
    def __init__(self, store: Store) -> None:
        self.store = store

    async def page(self, query: TaskQuery, size: int, after: Position | None, mode: str) -> Page:
        """One page of up to `size` matches below `after` (None: from the top). `mode` is
        list_tasks.lua's: 'id', 'rec' or 'all'."""
        replies = await asyncio.gather(*(self._scan(query, queue, size, after, mode) for queue in query.queues))
        found: list[tuple[Position, str, Record | None]] = []
        floor: Position | None = None
        for queue, (matches, (last, last_index), done) in zip(query.queues, replies, strict=True):
            step = 3 if mode == "id" else 4
            for i in range(0, len(matches), step):
                rec = record_of(matches[i + 3]) if mode != "id" else None
                found.append((_position(matches[i], matches[i + 1], queue), matches[i + 2].decode(), rec))
            if not done and last:
                stop = _position(last, last_index, queue)
                floor = stop if floor is None else max(floor, stop)
        if floor is not None:
            found = [hit for hit in found if hit[0] >= floor]
        found.sort(key=lambda hit: hit[0], reverse=True)
        if len(found) > size:
            found = found[:size]
            return Page(found, found[-1][0])
        return Page(found, floor)

    async def _scan(self, query: TaskQuery, queue: str, size: int, after: Position | None, mode: str
                    ) -> tuple[list, list, int]:
        below = 0  # 0: the start entry whole
        if after is not None:
            # In queues that sort below after.queue, the task at `after` itself comes later in the walk.
            start, below = after.entry, after.index + 1 if queue < after.queue else after.index
        elif query.before_ms:
            start = f"({query.before_ms}-0"
        else:
            start = "+"
        stop = f"{query.after_ms}-0" if query.after_ms else "-"
        matches, last, done = await self.store.run(  # type: ignore[misc]
            "list_tasks", queue, size, SCAN_BUDGET, start, below, stop, query.states, query.name, query.name_prefix,
            query.worker_id, mode)
        return matches, last, int(done)

    async def walk(self, query: TaskQuery, chunk: int = 1_000) -> AsyncIterator[list[tuple[str, str]]]:
        """Every match, as chunks of (queue, task id), for the bulk actions."""
        after: Position | None = None
        while True:
            page = await self.page(query, chunk, after, "id")
            if page.found:
                yield [(pos.queue, task_id) for pos, task_id, _ in page.found]
            if page.next is None:
                return
            after = page.next


def to_tasks(page: Page) -> list[task_pb2.Task]:
    return [to_task(task_id, pos.queue, rec) for pos, task_id, rec in page.found if rec]

