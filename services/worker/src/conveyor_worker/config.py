"""Worker configuration, filled from the CLI/environment at start-up."""

from __future__ import annotations

import os
import secrets
import socket
from dataclasses import dataclass, field

from conveyor.channels import TLSConfig


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
    token: str | None = field(default=None, repr=False)
    """Token for every stream and call (None: CONVEYOR_TOKEN); never shown in a repr."""
