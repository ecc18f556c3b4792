"""Conveyor on a Redis Cluster where the cluster itself matters: a chord whose queues live on
three different primaries, and a busy queue's slot moved by `redis-cli --cluster reshard` while
tasks flow through it (nothing lost, nothing recorded twice)."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from conveyor import Client, TaskState, chord
from tests.apps.workflows import add, tsum
from tests.harness import Cluster, wait_for
from tests.redis_cluster import RedisClusterServers

WAIT = 60.0


def queue_on(cluster: RedisClusterServers, port: int, prefix: str) -> str:
    """A queue name whose slot a given primary owns."""
    for i in range(100_000):
        name = f"{prefix}{i}"
        if cluster.primary_for_slot(cluster.slot_of(f"{{q:{name}}}")).port == port:
            return name
    raise AssertionError(f"no queue name on port {port}")


def test_a_chord_across_three_queues_on_three_primaries(cluster: Cluster, cluster_clean: RedisClusterServers) -> None:
    qa, qb, qc = (queue_on(cluster_clean, p.port, f"wf{n}-") for n, p in enumerate(cluster_clean.primaries()))
    assert len({cluster_clean.slot_of(f"{{q:{q}}}") for q in (qa, qb, qc)}) == 3
    _, first = cluster.scheduler(cluster_clean.url, name="scheduler-a")
    _, second = cluster.scheduler(cluster_clean.url, name="scheduler-b")
    cluster.worker(first, "tests.apps.workflows:app", queues=f"{qa},{qb}", concurrency=8)
    cluster.worker(second, "tests.apps.workflows:app", queues=qc, concurrency=2)
    with Client(second) as client:
        header = [add.s(i, 1).set(queue=qa if i % 2 else qb) for i in range(20)]
        handle = chord(header)(tsum.s().set(queue=qc), client=client)
        assert handle.result(timeout=WAIT) == sum(i + 1 for i in range(20))
        nodes = handle.nodes()
        queues = {client.get_task(h.id).queue for h in nodes.values()}
        assert queues == {qa, qb, qc}
        assert all(client.get_task(h.id).state == TaskState.SUCCEEDED for h in nodes.values())


def test_moving_a_busy_queues_slot_loses_nothing_and_records_nothing_twice(
        cluster: Cluster, cluster_clean: RedisClusterServers) -> None:
    source, target = cluster_clean.primaries()[:2]
    queue = cluster_clean.queue_name_in_first_slot(source)
    slot = cluster_clean.slot_of(f"{{q:{queue}}}")
    _, first = cluster.scheduler(cluster_clean.url, name="scheduler-a")
    _, second = cluster.scheduler(cluster_clean.url, name="scheduler-b")
    cluster.worker(first, queues=queue, concurrency=8)
    cluster.worker(second, queues=queue, concurrency=8)
    n, moved = 2_000, threading.Event()
    ids: dict[int, str] = {}

    def produce(target_address: str, numbers: range) -> None:
        with Client(target_address) as client:
            for i in numbers:  # an idempotency key lets the client retry through TRYAGAIN safely
                if i >= 2 * n // 3:  # the last third goes in once the slot has moved
                    moved.wait(120)
                ids[i] = client.submit("t.add", [i, i], queue=queue, idempotency_key=f"move-{i}").id

    with Client(first) as client, ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(produce, (first, second)[k % 2], range(k, n, 4)) for k in range(4)]
        # Move the slot while submits, dispatch and acks are all flowing through it.
        wait_for(lambda: len(ids) >= n // 3, 60, what="a third of the tasks submitted")
        cluster_clean.move_slot(slot, target)
        moved.set()
        for f in futures:
            f.result(timeout=120)
        assert cluster_clean.primary_for_slot(slot).port == target.port
        results = client.results([ids[i] for i in range(n)], timeout=120)
        assert results == [2 * i for i in range(n)]
        # Recorded once: each task ran to one SUCCEEDED attempt, the queue's fleet-wide counters
        # hold each submit and each success exactly once, and the index lists each task once.
        tasks = [client.get_task(ids[i]) for i in range(0, n, 97)]
        assert all(t.state == TaskState.SUCCEEDED for t in tasks)
        assert all(t.attempt == 1 for t in tasks), [(t.id, t.attempt) for t in tasks if t.attempt != 1]
        history = client.admin.queue_history(queue, minutes=15).queues[queue]
        assert (sum(m.submitted for m in history), sum(m.succeeded for m in history)) == (n, n)
        listed = [t.id for t in client.admin.iter_tasks(queue, states=[TaskState.SUCCEEDED])]
        assert sorted(listed) == sorted(ids.values())
