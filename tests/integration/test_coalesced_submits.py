"""Concurrent Submits from many connections, coalesced by the scheduler into shared script
calls (coalescing.py): each call still gets exactly its own tasks, an idempotency key shared
by concurrent calls still yields one task, and a bad call fails alone, naming its field.
Real scheduler, real Redis, real gRPC channels."""

from __future__ import annotations

import asyncio

import grpc
import pytest
import redis

from conveyor.v1 import task_pb2, task_service_pb2, task_service_pb2_grpc
from conveyor_scheduler.keys import QueueKeys

CHANNELS = 16
CALLS_PER_CHANNEL = 40


def spec(n: int, key: str = "") -> task_pb2.TaskSpec:
    return task_pb2.TaskSpec(name="t.add", payload=f'{{"args": [{n}, {n}]}}'.encode(), idempotency_key=key)


def evalsha_calls(r: redis.Redis) -> int:
    return int(r.info("commandstats").get("cmdstat_evalsha", {}).get("calls", 0))


def test_concurrent_submits_share_script_calls_and_keep_their_own_answers(scheduler: str, redis_url: str) -> None:
    r = redis.Redis.from_url(redis_url)

    async def channel(c: int) -> list[tuple[int, object]]:
        async with grpc.aio.insecure_channel(scheduler) as ch:
            stub = task_service_pb2_grpc.TaskServiceStub(ch)

            async def one(k: int) -> tuple[int, object]:
                n = c * 1000 + k
                if k % 10 == 3:  # a bad call among good ones: it alone is refused
                    specs = [spec(n), task_pb2.TaskSpec(name="")]
                elif k % 10 == 7:  # every channel races for the same key
                    specs = [spec(n, key=f"shared-{k}")]
                else:
                    specs = [spec(n), spec(n + 500)]
                try:
                    resp = await stub.Submit(task_service_pb2.SubmitRequest(tasks=specs), timeout=20)
                except grpc.aio.AioRpcError as exc:
                    return n, exc
                return n, resp

            return list(await asyncio.gather(*(one(k) for k in range(CALLS_PER_CHANNEL))))

    async def main() -> list[tuple[int, object]]:
        answers = await asyncio.gather(*(channel(c) for c in range(CHANNELS)))
        return [a for per_channel in answers for a in per_channel]

    before = evalsha_calls(r)
    answers = asyncio.run(main())
    script_calls = evalsha_calls(r) - before

    good = [(n, resp) for n, resp in answers if isinstance(resp, task_service_pb2.SubmitResponse)]
    bad = [(n, exc) for n, exc in answers if isinstance(exc, grpc.aio.AioRpcError)]
    assert len(good) + len(bad) == CHANNELS * CALLS_PER_CHANNEL
    assert len(bad) == CHANNELS * 4
    for _, exc in bad:
        assert exc.code() == grpc.StatusCode.INVALID_ARGUMENT and "tasks[1].name" in (exc.details() or "")

    ids_by_key: dict[str, set[str]] = {}
    fresh: list[str] = []
    for n, resp in good:
        assert isinstance(resp, task_service_pb2.SubmitResponse)
        k = n % 1000
        if k % 10 == 7:
            (sub,) = resp.tasks
            ids_by_key.setdefault(f"shared-{k}", set()).add(sub.id)
            if not sub.duplicate:
                fresh.append(sub.id)
        else:
            assert len(resp.tasks) == 2 and not any(t.duplicate for t in resp.tasks)
            fresh += [t.id for t in resp.tasks]
            # each call's answer holds its own tasks, in its order: the stored payloads say so
            for t, want in zip(resp.tasks, (n, n + 500), strict=True):
                payload = r.hget(QueueKeys.of("default").task(t.id), "d")
                assert payload == f'{{"args": [{want}, {want}]}}'.encode(), (t.id, payload)
    assert all(len(ids) == 1 for ids in ids_by_key.values()), ids_by_key  # one task per shared key
    assert len(ids_by_key) == CALLS_PER_CHANNEL // 10
    assert len(set(fresh)) == len(fresh)
    assert sum(r.llen(key) for key in QueueKeys.of("default").ready) \
        == len(fresh), "every stored task is queued once, and nothing of a refused call is"
    # coalesced: fewer script calls than accepted Submit calls (each alone would be one)
    assert script_calls < len(good), (script_calls, len(good))


@pytest.fixture(autouse=True)
def _no_workers() -> None:
    """No worker runs here: tasks stay queued, so the ready lists count what was stored."""
