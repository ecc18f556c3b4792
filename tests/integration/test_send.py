"""Client.send: submits that do not wait for their answer, merged on the Pipeline stream.

Real scheduler, real Redis, real worker processes. Each test checks that every send ends
as exactly one stored task with the right result, or as an error on its own handle, and
that a merged batch rejected for one bad task costs its neighbours nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import grpc
import pytest
import redis

from conveyor import App, AsyncClient, Client, Unavailable
from conveyor.errors import InvalidArgument
from conveyor.pipeline import SyncPipeline
from conveyor.v1 import task_pb2, task_service_pb2
from tests.harness import Cluster, wait_for

TASK_KEYS = "cv:{q:default}:t:*"


@pytest.fixture
def db(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


def stored(db: redis.Redis) -> int:
    return sum(1 for _ in db.scan_iter(TASK_KEYS, count=1000))


def merged(client: Client) -> int:
    stream = client._pipeline._stream  # type: ignore[union-attr]
    return 0 if stream is None else stream.merged


def test_every_send_becomes_one_task_with_its_result(cluster: Cluster, scheduler: str, db: redis.Redis) -> None:
    cluster.worker(scheduler, concurrency=8)
    n = 3000
    with Client(scheduler) as client:
        handles = [client.send("t.add", [i, i]) for i in range(n)]
        client.flush(timeout=60)
        assert merged(client) > 0, "sends queued behind each other should have gone out merged"
        ids = [h.id for h in handles]
        assert len(set(ids)) == n and all(h.queue == "default" for h in handles)
        assert client.results(handles, timeout=60) == [2 * i for i in range(n)]
    assert stored(db) == n


def test_a_bad_send_in_a_merged_batch_fails_alone(cluster: Cluster, scheduler: str, db: redis.Redis) -> None:
    """The scheduler rejects a merged batch whole; the client sends its calls again one by one."""
    cluster.worker(scheduler, concurrency=8)
    rounds: list[int] = []
    with Client(scheduler) as client:

        def one_round() -> bool:
            base = 1000 * len(rounds)
            handles = [client.send("t.add" if i != 50 else "", [base + i, 1]) for i in range(100)]
            with pytest.raises(InvalidArgument, match="name"):
                client.flush(timeout=60)
            with pytest.raises(InvalidArgument, match=r"tasks\[0\]\.name"):  # its own index, not the batch's
                assert handles[50].id
            good = handles[:50] + handles[51:]
            assert client.results(good, timeout=60) == [base + i + 1 for i in range(100) if i != 50]
            rounds.append(len(good))
            return client._pipeline._stream.resent > 0  # type: ignore[union-attr]

        wait_for(one_round, 120, interval=0, what="a merged batch holding the bad send")
    assert stored(db) == sum(rounds)


def test_flush_waits_for_every_send_and_raises_the_first_refusal(scheduler: str, db: redis.Redis) -> None:
    with Client(scheduler) as client:
        client.flush()  # nothing sent: returns at once
        good = [client.send("t.add", [i, i], countdown=3600) for i in range(20)]
        bad = client.send("t.add", [0, 0], priority=99)
        client.send("t.add", [1, 1], countdown=3600)
        with pytest.raises(InvalidArgument, match="priority"):
            client.flush(timeout=30)
        assert all(h.id for h in good)
        with pytest.raises(InvalidArgument, match="priority"):
            bad.result(timeout=5)
        assert not client._sends
        client.flush()  # a refusal is reported once
    assert stored(db) == 21


def test_sends_beyond_the_unconfirmed_limit_wait_their_turn(scheduler: str, db: redis.Redis) -> None:
    limit, n = 3, 200
    with grpc.insecure_channel(scheduler) as channel:
        pipe = SyncPipeline(channel, max_unconfirmed=limit)
        try:
            futures = []
            for i in range(n):
                spec = task_pb2.TaskSpec(name="t.add", payload=f'{{"args": [{i}, 0]}}'.encode())
                futures.append(pipe.send(task_service_pb2.SubmitRequest(tasks=[spec])))
                assert sum(not f.done() for f in futures) <= limit
            ids = [f.result(30).tasks[0].id for f in futures]
        finally:
            pipe.close()
    assert len(set(ids)) == n
    assert stored(db) == n


def test_sends_fail_with_unavailable_when_the_scheduler_is_gone(cluster: Cluster, redis_url: str,
                                                               db: redis.Redis) -> None:
    proc, target = cluster.scheduler(redis_url)
    with Client(target, timeout=5) as client:
        first = [client.send("t.add", [i, i], countdown=3600) for i in range(50)]
        client.flush(timeout=30)
        proc.kill()
        wait_for(lambda: not proc.alive(), 10, what="the scheduler to die")
        lost = [client.send("t.add", [i, i]) for i in range(5)]
        with pytest.raises(Unavailable):
            client.flush(timeout=30)
        for h in lost:
            with pytest.raises(Unavailable):
                assert h.id
        port = int(target.rsplit(":", 1)[1])
        cluster.scheduler(redis_url, port=port, name="scheduler-2")
        again = wait_for(lambda: _sent(client), 30, what="a send on a new stream")
        assert len({h.id for h in first} | {again}) == 51
    assert stored(db) == 51


def _sent(client: Client) -> str | None:
    try:
        return client.send("t.add", [7, 7], countdown=3600).id
    except Unavailable:
        return None


def test_a_task_definition_sends_too(cluster: Cluster, scheduler: str) -> None:
    cluster.worker(scheduler)
    app = App("producer", scheduler=scheduler)

    @app.task(name="t.add")
    def add(x: int, y: int) -> int:
        return x + y

    try:
        handles = [add.send(i, 1) for i in range(50)]
        assert app.client.results(handles, timeout=30) == [i + 1 for i in range(50)]
        assert all(h.queue == "default" for h in handles)
    finally:
        app.client.close()


# -- AsyncClient ------------------------------------------------------------------------------


def test_async_sends_are_merged_and_each_gets_its_task(cluster: Cluster, scheduler: str, db: redis.Redis) -> None:
    cluster.worker(scheduler, concurrency=8)
    n = 2000

    async def main() -> None:
        async with AsyncClient(scheduler) as client:
            handles = [await client.send("t.add", [i, i]) for i in range(n)]
            with pytest.raises(RuntimeError, match="not answered yet"):
                handles[-1].id  # noqa: B018 - nothing has been awaited since it was queued
            assert "not answered yet" in repr(handles[-1])
            await client.flush(timeout=60)
            assert client._pipeline._stream.merged > 0  # type: ignore[union-attr]
            assert len({h.id for h in handles}) == n and {h.queue for h in handles} == {"default"}
            assert await client.results(handles, timeout=60) == [2 * i for i in range(n)]

    asyncio.run(main())
    assert stored(db) == n


def test_an_async_bad_send_fails_alone(cluster: Cluster, scheduler: str, db: redis.Redis) -> None:
    cluster.worker(scheduler, concurrency=8)
    good = 0

    async def main() -> None:
        nonlocal good
        async with AsyncClient(scheduler) as client:
            for rnd in range(50):
                base = 1000 * rnd
                handles = [await client.send("t.add", [base + i, 1],
                                             priority=99 if i == 50 else 0) for i in range(100)]
                with pytest.raises(InvalidArgument, match=r"tasks\[0\]\.priority"):
                    await handles[50].sent()  # its own index, not the merged batch's
                with pytest.raises(InvalidArgument, match="priority"):
                    await client.flush(timeout=60)
                rest = handles[:50] + handles[51:]
                assert await client.results(rest, timeout=60) == [base + i + 1 for i in range(100) if i != 50]
                good += len(rest)
                if client._pipeline._stream.resent:  # type: ignore[union-attr]
                    return
            raise AssertionError("no merged batch held the bad send in 50 rounds")

    asyncio.run(main())
    assert stored(db) == good


def test_an_async_task_definition_sends_too(cluster: Cluster, scheduler: str) -> None:
    cluster.worker(scheduler)
    app = App("producer", scheduler=scheduler)

    @app.task(name="t.add")
    def add(x: int, y: int) -> int:
        return x + y

    async def main() -> list[int]:
        try:
            handles = [await add.asend(i, 2) for i in range(20)]
            await app.aclient.flush()
            return [await h.result(timeout=30) for h in handles]
        finally:
            await app.aclient.close()

    assert asyncio.run(main()) == [i + 2 for i in range(20)]


def test_async_sends_fail_with_unavailable_when_the_scheduler_is_gone(cluster: Cluster, redis_url: str,
                                                                     db: redis.Redis) -> None:
    proc, target = cluster.scheduler(redis_url)

    async def main() -> None:
        async with AsyncClient(target, timeout=5) as client:
            kept = [await client.send("t.add", [i, i], countdown=3600) for i in range(30)]
            await client.flush(timeout=30)
            proc.kill()
            lost = [await client.send("t.add", [i, i]) for i in range(5)]
            with pytest.raises(Unavailable):
                await client.flush(timeout=30)
            for h in lost:
                with pytest.raises(Unavailable):
                    await h.sent()
            assert len({h.id for h in kept}) == 30

    asyncio.run(main())
    assert stored(db) == 30


def test_a_send_on_a_closed_client_raises_and_holds_no_slot(scheduler: str) -> None:
    with grpc.insecure_channel(scheduler) as channel:
        pipe = SyncPipeline(channel, max_unconfirmed=2)
        request = task_service_pb2.SubmitRequest(tasks=[task_pb2.TaskSpec(name="t.add", payload=b'{"args": [1, 1]}')])
        assert pipe.send(request).result(30).tasks[0].id
        pipe.close()
    with pytest.raises(grpc.RpcError, match="the client was closed") as refused:
        pipe.send(request)
    assert refused.value.code() == grpc.StatusCode.CANCELLED
    # Both slots are free again: the answered send's and the refused one's.
    assert pipe._unconfirmed.acquire(timeout=5) and pipe._unconfirmed.acquire(timeout=5)


def test_closing_a_client_waits_for_its_sends(scheduler: str, db: redis.Redis) -> None:
    n = 2000
    with Client(scheduler) as client:
        handles = [client.send("t.add", [i, i], countdown=3600) for i in range(n)]
    # No flush: leaving the block closed the client, which let every send be answered first.
    assert all(not h._pending or h._pending.done() for h in handles)
    assert stored(db) == n


def test_closing_an_async_client_waits_for_its_sends(scheduler: str, db: redis.Redis) -> None:
    n = 2000

    async def main() -> None:
        async with AsyncClient(scheduler) as client:
            for i in range(n):
                await client.send("t.add", [i, i], countdown=3600)

    asyncio.run(main())
    assert stored(db) == n
