"""Redis layer of the beat: schedule hashes, the due set and the leader lease.

Every key shares the hash tag ``{beat}`` (keys.py), so each multi-key script touches one
Redis Cluster slot. Multi-key changes are the beat_*.lua scripts; lua/beat_save.lua lists
the fields of a schedule hash.
"""

from __future__ import annotations

from collections.abc import Sequence

from redis.commands.core import AsyncScript

from conveyor_scheduler.keys import BEAT_CHANNEL, BEAT_DUE, BEAT_INDEX, BEAT_LEADER, schedule_key
from conveyor_scheduler.redis_clients import AsyncRedis, pipelined
from conveyor_scheduler.store import Record, script_text


class ScheduleStore:
    SCRIPTS = ("beat_save", "beat_delete", "beat_advance", "beat_lease")

    def __init__(self, redis: AsyncRedis) -> None:
        self.redis = redis
        self._scripts: dict[str, AsyncScript] = {
            name: redis.register_script(script_text(name)) for name in self.SCRIPTS
        }

    # -- schedules ---------------------------------------------------------------------

    async def read(self, schedule_id: str) -> Record:
        return await self.redis.hgetall(schedule_key(schedule_id))

    async def read_many(self, ids: Sequence[str]) -> list[Record]:
        pipe = self.redis.pipeline(transaction=False)
        for schedule_id in ids:
            pipe.hgetall(schedule_key(schedule_id))
        return list(await pipe.execute())

    async def save(self, schedule_id: str, expected_version: int, next_ms: int | None,
                   fields: dict[str, bytes | str | int]) -> int:
        """Writes if the stored version is `expected_version` (0: absent); returns the new version or 0."""
        args: list[bytes | str | int] = [schedule_id, expected_version, "" if next_ms is None else next_ms,
                                         BEAT_CHANNEL]
        for name, value in fields.items():
            args += [name, value]
        keys = (schedule_key(schedule_id), BEAT_DUE, BEAT_INDEX)
        return int(await self._scripts["beat_save"](keys=keys, args=args))

    async def delete(self, schedule_id: str) -> bool:
        keys = (schedule_key(schedule_id), BEAT_DUE, BEAT_INDEX)
        return bool(await self._scripts["beat_delete"](keys=keys, args=[schedule_id, BEAT_CHANNEL]))

    async def page(self, after: str, count: int) -> tuple[list[tuple[str, Record]], bool]:
        """Up to `count` schedules with ids after `after` ('' = from the start), and whether more follow."""
        raw = await self.redis.zrangebylex(BEAT_INDEX, f"({after}" if after else "-", "+", start=0, num=count + 1)
        ids = [i.decode() for i in raw[:count]]
        records = await self.read_many(ids) if ids else []
        return [(i, r) for i, r in zip(ids, records, strict=True) if r], len(raw) > count

    # -- firing --------------------------------------------------------------------------

    async def due(self, now_ms: int, limit: int) -> list[str]:
        raw = await self.redis.zrangebyscore(BEAT_DUE, "-inf", now_ms, start=0, num=limit)
        return [i.decode() for i in raw]

    async def earliest(self) -> int | None:
        """The earliest next fire time of any active schedule."""
        first = await self.redis.zrange(BEAT_DUE, 0, 0, withscores=True)
        return int(first[0][1]) if first else None

    async def advance(self, token: str, passes: Sequence[tuple[str, int, int, str, int, int, int | None, str]]
                      ) -> list[int]:
        """Records firing passes (id, version, latest fire ms or -1, its task id, fired, missed,
        next ms, error), pipelined; one beat_advance.lua result per pass."""
        calls = [((schedule_key(sid), BEAT_DUE, BEAT_LEADER),
                  [token, version, fired_ms, task_id, fired, missed, "" if next_ms is None else next_ms, sid, error])
                 for sid, version, fired_ms, task_id, fired, missed, next_ms, error in passes]
        return [int(r) for r in await pipelined(self.redis, self._scripts["beat_advance"], calls)]

    # -- the leader lease ------------------------------------------------------------------

    async def acquire(self, token: str, lease_ms: int) -> bool:
        return bool(await self.redis.set(BEAT_LEADER, token, nx=True, px=lease_ms))

    async def renew(self, token: str, lease_ms: int) -> bool:
        return bool(await self._scripts["beat_lease"](keys=(BEAT_LEADER,), args=[token, lease_ms, BEAT_CHANNEL]))

    async def release(self, token: str) -> bool:
        return bool(await self._scripts["beat_lease"](keys=(BEAT_LEADER,), args=[token, 0, BEAT_CHANNEL]))

    async def leader(self) -> str:
        """The lease holder's scheduler id ('' when nobody holds the lease)."""
        raw = await self.redis.get(BEAT_LEADER)
        return raw.decode().rpartition("/")[0] if raw else ""

    async def lease_left_ms(self) -> int:
        """Milliseconds until the current lease lapses (<= 0: no lease)."""
        return int(await self.redis.pttl(BEAT_LEADER))
