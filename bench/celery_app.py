"""The Celery side of the benchmark: one app, one task, settings chosen for speed.

The worker runs `celery -A bench.celery_app worker ...`; both it and the producer read the
private Redis's address from BENCH_CELERY_REDIS (redis://127.0.0.1:PORT). Broker on db 0,
results on db 1.

Speed settings (everything else is Celery's default):
- task_acks_late False (the default): ack on receipt, one round trip fewer per task.
- worker_prefetch_multiplier BENCH_CELERY_PREFETCH (64): each pool slot reserves this many
  messages, so the worker is never starved between fetches (Celery's default is 4).
- result_expires 1 h, JSON only, no task events, no "sent" events, rate limits disabled
  in the worker, no result "extended" metadata, gossip/mingle/heartbeat off on the command line.
"""

from __future__ import annotations

import os
import time

from celery import Celery

from bench import work

QUEUE = "bench"


def make_app() -> Celery:
    """A new app (own connections and result consumer), so each scenario's producer starts clean."""
    base = os.environ.get("BENCH_CELERY_REDIS", "redis://127.0.0.1:6379")
    celery = Celery("bench", broker=f"{base}/0", backend=f"{base}/1")
    celery.conf.update(
        task_default_queue=QUEUE,
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        task_acks_late=False,
        worker_prefetch_multiplier=int(os.environ.get("BENCH_CELERY_PREFETCH", "64")),
        result_expires=3600,
        result_extended=False,
        task_track_started=False,
        task_send_sent_event=False,
        worker_send_task_events=False,
        worker_disable_rate_limits=True,
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
    )

    @celery.task(name="bench.add", shared=False)  # each app its own, no process-wide registration
    def add(x: int, y: int) -> int:
        return x + y

    @celery.task(name="bench.burn", shared=False)
    def burn(n: int) -> int:
        return work.burn(n)

    @celery.task(name="bench.tsum", shared=False)
    def tsum(values: list[int]) -> dict[str, float]:
        """workflows: a chord's callback, as bench/tasks.py's (the sum, and time.time() at its start)."""
        started = time.time()
        return {"sum": sum(values), "started": started}

    return celery


app = make_app()
