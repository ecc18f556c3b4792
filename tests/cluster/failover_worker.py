"""`python -m tests.cluster.failover_worker APP ...`: conveyor-worker, and a file of the acks it
was told are recorded.

The failover test must know which results the scheduler acknowledged: a worker forgets an ack
once a ReportDone confirms its report (conveyor_worker/stream.py). This wraps that one method so
each confirmed, accepted ack (not one the scheduler refused) is appended as a task id to the file
named by CONVEYOR_TEST_CONFIRMED_LOG, before the worker forgets it. Nothing else changes.
"""

from __future__ import annotations

import os

from conveyor.v1 import worker_service_pb2
from conveyor_worker import stream
from conveyor_worker.cli import main

LOG = os.environ["CONVEYOR_TEST_CONFIRMED_LOG"]
_report_done = stream.Stream._report_done


def _confirmed(self: stream.Stream, done: worker_service_pb2.ReportDone) -> None:
    refused = {outcome.task_id for outcome in done.refused}
    ids = [ack.task_id for seq, acks in self._unconfirmed.items() if seq <= done.seq for ack in acks
           if ack.task_id not in refused and ack.WhichOneof("outcome") == "result"]
    if ids:
        fd = os.open(LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, "".join(f"{task_id}\n" for task_id in ids).encode())  # one write: whole lines
        finally:
            os.close(fd)
    _report_done(self, done)


stream.Stream._report_done = _confirmed  # type: ignore[method-assign]

if __name__ == "__main__":
    main()
