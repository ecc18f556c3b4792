"""Worker configuration, filled from the CLI/environment at start-up."""

from __future__ import annotations

import os
import secrets
import socket
from dataclasses import dataclass, field

from conveyor.channels import TLSConfig

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
"""The worker's log lines (its children's too)."""
LOG_LEVEL_ENV = "CONVEYOR_WORKER_LOG_LEVEL"
"""The worker's --log-level, which the process pool's children read."""


@dataclass(frozen=True, slots=True)
class PoolOptions:
    """The process pool's settings (`--pool processes`)."""

    app_ref: str
    """The app, imported once by each child (or by the fork server they fork from)."""
    start_method: str = ""
    """fork, spawn or forkserver ("": forkserver where available, else spawn)."""
    max_tasks_per_child: int = 0
    """Attempts after which a child is replaced (0: never)."""
    max_memory_per_child: int = 0
    """MiB of resident memory past which a child is replaced once its attempt ends (0: no limit)."""
    autoscale: tuple[int, int] | None = None
    """(MAX, MIN) children; None: a fixed number, the worker's slots."""
    autoscale_keepalive: float = 30.0
    """Seconds without a backlog before autoscale stops idle children."""
    app_tls: TLSConfig | None = None
    app_token: str | None = field(default=None, repr=False)
    """The --tls-* and --token given on the worker's command line (None: not given): each child
    applies them to the app it imports (`App.set_security`), as the worker does to its own."""


def default_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(2)}"


@dataclass(frozen=True, slots=True)
class WorkerConfig:
    targets: tuple[str, ...] = ("127.0.0.1:50051",)
    """Scheduler addresses; the worker moves to the next one when a stream breaks."""
    queues: tuple[str, ...] = ("default",)
    """Queues to consume."""
    concurrency: int = 8
    """Tasks run at once."""
    prefetch: int = 0
    """Leases held beyond `concurrency`, waiting here for a slot (Celery's prefetch): they save
    a round trip per task when tasks are short. The worker never holds more than
    concurrency + prefetch leases; 0 (the default) keeps every waiting task in its queue."""
    worker_id: str = field(default_factory=default_worker_id)
    """Unique per process."""
    grace_period: float = 30.0
    """Seconds in-flight tasks may take to finish after SIGTERM before they are handed back."""
    reconnect_max_backoff: float = 5.0
    """Cap on the wait between reconnect attempts."""
    tls: TLSConfig | None = None
    """TLS to the schedulers (None: CONVEYOR_TLS_*, else plaintext); see conveyor.channels."""
    pools: tuple[str, ...] = ("threads",)
    """Pools of plain functions this worker runs; the first runs those that name none."""
    process_pool: PoolOptions | None = None
    """The process pool's settings (required when `pools` has "processes")."""
    token: str | None = field(default=None, repr=False)
    """Token for every stream and call (None: CONVEYOR_TOKEN); never shown in a repr."""
