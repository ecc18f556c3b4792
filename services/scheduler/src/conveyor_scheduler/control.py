"""Worker control (drain, shutdown, slots) relayed to the replica holding the worker's stream.

AdminService may run on any replica; the stream lives on one. A request is published on
CONTROL_CHANNEL naming the stream (WorkerSession.owner, from the registry); every replica
hears it and the one holding that stream sends the worker a ConnectResponse.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from conveyor.v1 import worker_service_pb2
from conveyor_scheduler.keys import CONTROL_CHANNEL
from conveyor_scheduler.redis_clients import AsyncRedis
from conveyor_scheduler.sessions import WorkerSession

log = logging.getLogger(__name__)
DRAIN, SHUTDOWN, CONCURRENCY = "drain", "shutdown", "concurrency"


class WorkerControl:
    def __init__(self, redis: AsyncRedis, session_of: Callable[[str], WorkerSession | None]) -> None:
        self.redis = redis
        self.session_of = session_of
        """worker id -> its stream on this replica, if it is here."""

    async def send(self, worker_id: str, owner: str, action: str, arg: str | int = "") -> None:
        """Publishes a request for the stream `owner` of `worker_id` (validated by the caller)."""
        await self.redis.publish(CONTROL_CHANNEL, f"{worker_id}|{owner}|{action}|{arg}")

    def on_message(self, payload: str) -> None:
        """A request heard on CONTROL_CHANNEL: acted on only by the replica holding the stream."""
        worker_id, owner, action, arg = [*payload.split("|", 3), "", "", ""][:4]
        session = self.session_of(worker_id)
        if session is None or session.owner != owner or session.closed:
            return
        if action in (DRAIN, SHUTDOWN):
            session.stop_work()  # nothing more is pushed, from now on
            msg = worker_service_pb2.ConnectResponse(drain=worker_service_pb2.DrainWorker(
                reason=arg or "asked by an operator", stay_connected=action == DRAIN))
        elif action == CONCURRENCY and arg.isdigit():
            msg = worker_service_pb2.ConnectResponse(
                set_concurrency=worker_service_pb2.SetConcurrency(concurrency=int(arg)))
        else:
            log.warning("ignoring a worker control request I do not understand: %r", payload)
            return
        log.info("worker %s: %s %s", worker_id, action, arg)
        session.outbox.put_nowait(msg)
