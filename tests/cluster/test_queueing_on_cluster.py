"""tests/integration/test_queueing.py on a Redis Cluster: priority then FIFO, routing, a batch of ten
thousand, stale leases, batch acks, cancel."""

from tests.integration.test_queueing import *  # noqa: F403
