"""Beat: periodic schedules, fired by exactly one scheduler replica at a time.

Leadership is a Redis lease (``SET NX PX``, renewed every third of the lease by a
compare-and-renew script). A follower sleeps until the lease would lapse (or until the
leader says it released it) and then takes it. Only the holder fires, and only while its
own monotonic clock says the lease is still valid.

The leader sleeps until the earliest next fire time or a change (a local change, or one
made on another replica and announced on ``cv:beat``), with a coarse safety re-check.
A firing pass submits the due firings through the normal submit path, each with the
idempotency key ``SCHEDULE_ID@FIRE_TIME``, and only then records the pass (beat_advance.lua,
refused when the lease is no longer ours). A leader that dies in between leaves the pass
unrecorded; its successor plans the same fire times again and the keys make their
re-submission a no-op, so no fire time is submitted twice and none is lost silently.
Fire times that passed while nobody could fire them follow the schedule's catch-up policy
(schedules.plan_firings).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from redis.exceptions import RedisError

from conveyor.v1 import schedule_service_pb2
from conveyor_scheduler.errors import Aborted, AlreadyExists, InvalidArgument, NotFound, SchedulerError
from conveyor_scheduler.keys import BEAT_CHANNEL
from conveyor_scheduler.redis_clients import AsyncRedis
from conveyor_scheduler.schedule_store import ScheduleStore
from conveyor_scheduler.schedules import (
    FIRE_ONCE,
    ScheduleDef,
    check_schedule,
    check_schedule_id,
    fire_time_text,
    firing_spec,
    load_schedule,
    plan_firings,
)
from conveyor_scheduler.signals import Signal
from conveyor_scheduler.store import Record
from conveyor_scheduler.submission import Submission

if TYPE_CHECKING:
    from conveyor.v1 import task_pb2

log = logging.getLogger(__name__)
SAFETY_RECHECK_S = 5.0
"""Longest sleep of the leader between passes, whatever it was told."""
FIRE_BATCH = 256
"""Most schedules fired in one pass (one submit call)."""
SAVE_ATTEMPTS = 20
"""Optimistic retries of a schedule change that raced another change."""
PLAN_RETRY_MS = 60_000
"""How soon a schedule whose fire times could not be computed is tried again."""


class Beat:
    def __init__(self, redis: AsyncRedis, submission: Submission, *, clock: Callable[[], int], scheduler_id: str,
                 lease_ms: int, grace_ms: int) -> None:
        self.redis = redis
        """The schedules (ScheduleStore) and the change channel."""
        self.submission = submission
        """Where firings go: the submit path of every other task."""
        self.clock = clock
        self.scheduler_id = scheduler_id
        self.store = ScheduleStore(redis)
        self.lease_ms = lease_ms
        self.grace_ms = grace_ms
        self.token = f"{scheduler_id}/{os.urandom(4).hex()}"
        self._held = False
        self._valid_until = 0.0
        self._changed = Signal()
        """A schedule or the leadership changed: the firing loop re-plans."""
        self._released = Signal()
        """The leader released its lease: followers try to take it now."""
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def is_leader(self) -> bool:
        """True while this replica holds the lease by its own clock."""
        return self._held and time.monotonic() < self._valid_until

    async def start(self) -> None:
        await self.try_lead()  # the first replica up leads before it serves
        self._tasks = [asyncio.create_task(self._lease_loop(), name="beat-lease"),
                       asyncio.create_task(self._fire_loop(), name="beat-fire"),
                       asyncio.create_task(self._listen(), name="beat-listen")]

    async def close(self) -> None:
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._held:  # hand over at once instead of letting the lease lapse
            with contextlib.suppress(RedisError, OSError):
                await self.store.release(self.token)
            self._held = False

    def changed(self) -> None:
        self._changed.notify()

    # -- schedule operations (ScheduleService) -------------------------------------------

    def check(self, msg: schedule_service_pb2.Schedule, at: str = "schedule") -> ScheduleDef:
        """Validates a definition, including its template as Submit would validate a firing."""
        d = check_schedule(msg, at, now_ms=self.clock())
        self.submission.check_specs([firing_spec(d, self.clock())], f"{at}.template", indexed=False)
        return d

    async def get(self, schedule_id: str) -> Record:
        rec = await self.store.read(check_schedule_id(schedule_id, "schedule_id"))
        if not rec:
            raise NotFound(f"no schedule {schedule_id!r}")
        return rec

    async def create(self, d: ScheduleDef) -> Record:
        now = self.clock()
        anchor = d.anchor(now)
        fields: dict[str, bytes | str | int] = {"def": d.blob, "a": anchor, "ca": now, "ua": now, "fc": 0, "ms": 0}
        if not await self.store.save(d.id, 0, d.next_from(anchor, now), fields):
            raise AlreadyExists(f"schedule {d.id!r} already exists (UpdateSchedule changes it)")
        self.changed()
        return await self.store.read(d.id)

    async def update(self, d: ScheduleDef, *, allow_missing: bool = False) -> Record:
        """Replaces the definition; the next fire time is the new definition's first one that
        is neither submitted already nor more than the misfire grace in the past."""
        for _ in range(SAVE_ATTEMPTS):
            rec = await self.store.read(d.id)
            if not rec:
                if not allow_missing:
                    raise NotFound(f"no schedule {d.id!r} (set allow_missing to create it)")
                with contextlib.suppress(AlreadyExists):  # created meanwhile: update that one
                    return await self.create(d)
                continue
            if rec[b"def"] == d.blob:
                return rec  # unchanged: applying the same definition again is a no-op
            now = self.clock()
            anchor = d.anchor(now, int(rec[b"a"]) if rec.get(b"a") else None)
            nxt = None
            if rec.get(b"pz") != b"1":
                nxt = d.next_from(anchor, max(int(rec.get(b"lf", -1)) + 1, now - self.grace_ms))
            if await self.store.save(d.id, int(rec[b"v"]), nxt, {"def": d.blob, "a": anchor, "ua": now}):
                self.changed()
                return await self.store.read(d.id)
        raise Aborted(f"schedule {d.id!r} kept changing concurrently; retry")

    async def set_paused(self, schedule_id: str, paused: bool) -> Record:
        """Pauses, or resumes from the first fire time at or after now (no catch-up)."""
        for _ in range(SAVE_ATTEMPTS):
            rec = await self.get(schedule_id)
            if (rec.get(b"pz") == b"1") == paused:
                return rec
            d = load_schedule(rec[b"def"])
            now = self.clock()
            nxt = None if paused else d.next_from(int(rec.get(b"a") or 0), now)
            if await self.store.save(schedule_id, int(rec[b"v"]), nxt, {"pz": int(paused), "ua": now}):
                self.changed()
                return await self.store.read(schedule_id)
        raise Aborted(f"schedule {schedule_id!r} kept changing concurrently; retry")

    async def fire_now(self, schedule_id: str) -> tuple[str, Record]:
        """FireSchedule: the schedule's task submitted once, now, outside its plan (nothing of the
        schedule's record changes); returns the task id and the record."""
        rec = await self.get(schedule_id)
        (outcome,) = await self._submit([[firing_spec(load_schedule(rec[b"def"]), self.clock())]])
        if isinstance(outcome, str):
            raise InvalidArgument("schedule.template", outcome)
        log.info("beat: schedule %s fired by request -> %s", schedule_id, outcome[0].id)
        return outcome[0].id, rec

    async def delete(self, schedule_id: str) -> None:
        if not await self.store.delete(check_schedule_id(schedule_id, "schedule_id")):
            raise NotFound(f"no schedule {schedule_id!r}")
        self.changed()

    async def page(self, page_size: int, page_token: str) -> tuple[list[Record], str]:
        if page_size > 1000:
            raise InvalidArgument("page_size", f"must be at most 1000, got {page_size}")
        if page_token:
            check_schedule_id(page_token, "page_token")
        rows, more = await self.store.page(page_token, page_size or 100)
        return [rec for _, rec in rows], rows[-1][0] if more and rows else ""

    # -- leadership ----------------------------------------------------------------------

    async def _lease_loop(self) -> None:
        while True:
            seen = self._released.gen
            delay = await self.try_lead()
            await self._released.wait_change(seen, delay)

    async def try_lead(self) -> float:
        """One lease round: renew the lease, or take it if it is free. Returns the seconds to
        the next round (a third of the lease, or until the holder's lease would lapse)."""
        renew_every = self.lease_ms / 3000
        started = time.monotonic()
        try:
            ok = self._held and await self.store.renew(self.token, self.lease_ms)
            if not ok:
                ok = await self.store.acquire(self.token, self.lease_ms)
            if ok:
                self._valid_until = started + self.lease_ms / 1000 * 0.9
                if not self._held:
                    self._held = True
                    log.info("beat: %s is the beat leader (lease %.1fs)", self.scheduler_id, self.lease_ms / 1000)
                    self._changed.notify()
                return renew_every
            self._step_down("another replica holds the lease")
            return min(renew_every, max(await self.store.lease_left_ms(), 5) / 1000)
        except (RedisError, OSError) as exc:
            log.warning("beat: lease check failed (%s)", exc)
            if self._held and not self.is_leader:
                self._step_down("the lease lapsed while Redis was unreachable")
            return min(renew_every, 0.5)

    def _step_down(self, why: str) -> None:
        if self._held:
            log.warning("beat: %s is no longer the beat leader: %s", self.scheduler_id, why)
            self._held = False
            self._valid_until = 0.0
            self._changed.notify()

    async def _listen(self) -> None:
        """Change notifications from every replica (and the leader's 'released')."""
        backoff = 0.1
        while True:
            pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(BEAT_CHANNEL)
                backoff = 0.1
                self._changed.notify()  # (re)subscribed: whatever we missed, re-plan
                while True:
                    msg = await pubsub.get_message(timeout=None)
                    if msg is None:
                        continue
                    if msg["data"] == b"released":
                        self._released.notify()
                    else:
                        self._changed.notify()
            except (RedisError, OSError) as exc:
                log.warning("beat: lost the change channel (%s); reconnecting in %.1fs", exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
            finally:
                with contextlib.suppress(RedisError, OSError):
                    await pubsub.aclose()

    # -- firing --------------------------------------------------------------------------

    async def _fire_loop(self) -> None:
        while True:
            seen = self._changed.gen
            delay = SAFETY_RECHECK_S
            if self.is_leader:
                try:
                    nxt = await self.fire_due()
                    if nxt is not None:
                        delay = min(delay, max(0.0, (nxt - self.clock() + 1) / 1000))
                except (RedisError, OSError) as exc:
                    log.warning("beat: firing pass failed (%s); retrying", exc)
                    delay = 0.5
                except Exception:  # a bug must not stop every schedule for good
                    log.exception("beat: firing pass failed")
                    delay = 1.0
            if delay > 0:
                await self._changed.wait_change(seen, delay)

    async def fire_due(self) -> int | None:
        """One pass as leader: fires everything due at clock(); returns the earliest next fire time."""
        now = self.clock()
        ids = await self.store.due(now, FIRE_BATCH)
        if ids:
            await self._fire(ids, now)
            if len(ids) == FIRE_BATCH:
                return now
        return await self.store.earliest()

    async def _fire(self, ids: list[str], now: int) -> None:
        passes: list[tuple[str, int, list[int], int, int | None, list[task_pb2.TaskSpec]]] = []
        errors: dict[str, str] = {}
        for sid, rec in zip(ids, await self.store.read_many(ids), strict=True):
            if not rec or b"nx" not in rec or rec.get(b"pz") == b"1":
                passes.append((sid, int(rec.get(b"v", 0)) if rec else 0, [], 0, None, []))
                continue
            try:
                d = load_schedule(rec[b"def"])
                plan = plan_firings(d, anchor_ms=int(rec.get(b"a") or 0), next_ms=int(rec[b"nx"]),
                                    last_ms=int(rec.get(b"lf", -1)), now_ms=now, grace_ms=self.grace_ms)
            except Exception as exc:  # one broken schedule must not stop the others
                log.exception("beat: cannot plan schedule %s; retrying in a minute", sid)
                errors[sid] = f"cannot compute fire times on {self.scheduler_id}: {exc}"
                passes.append((sid, int(rec[b"v"]), [], 0, now + PLAN_RETRY_MS, []))
                continue
            passes.append((sid, int(rec[b"v"]), plan.fires, plan.missed, plan.next_ms,
                           [firing_spec(d, t) for t in plan.fires]))
            if plan.missed:
                log.warning("beat: schedule %s missed %d fire time(s) from %s (catch-up: %s)", sid, plan.missed,
                            fire_time_text(int(rec[b"nx"])), "fire once" if d.catchup == FIRE_ONCE else "skip")
        if not self.is_leader:
            return
        outcomes = await self._submit([p[5] for p in passes])
        records = []
        for (sid, version, fires, missed, next_ms, _), outcome in zip(passes, outcomes, strict=True):
            if isinstance(outcome, str):
                log.error("beat: schedule %s could not fire: %s", sid, outcome)
                records.append((sid, version, -1, "", 0, missed + len(fires), next_ms, outcome))
                continue
            for fire, sub in zip(fires, outcome, strict=True):
                log.debug("beat: %s@%s -> %s%s", sid, fire_time_text(fire), sub.id,
                          " (already submitted)" if sub.duplicate else "")
            last_id = outcome[-1].id if outcome else ""
            records.append((sid, version, fires[-1] if fires else -1, last_id, len(fires), missed, next_ms,
                            errors.get(sid, "")))
        if -1 in await self.store.advance(self.token, records):
            self._step_down("the lease moved on during a firing pass")

    async def _submit(self, batches: list[list[task_pb2.TaskSpec]]) -> list[list | str]:
        """Submits every schedule's firings in one call; when one is refused (its template no
        longer validates after a limit or route change, its queue cannot be registered), that
        schedule alone gets the error."""
        flat = [spec for batch in batches for spec in batch]
        if not flat:
            return [[] for _ in batches]
        try:
            submitted = await self.submission.submit_specs(flat, "firings")
        except SchedulerError:
            out: list[list | str] = []
            for batch in batches:
                try:
                    out.append(await self.submission.submit_specs(batch, "firings") if batch else [])
                except SchedulerError as exc:
                    out.append(str(exc))
            return out
        out, i = [], 0
        for batch in batches:
            out.append(submitted[i:i + len(batch)])
            i += len(batch)
        return out
