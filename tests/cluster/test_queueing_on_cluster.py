"""The core of tests/integration/test_queueing.py on a Redis Cluster: priority then FIFO, a batch of
ten thousand, stale leases, batch acks."""

from tests.integration.test_queueing import (  # noqa: F401 - collected by pytest
    test_batch_ack_reports_each_outcome,
    test_batch_of_ten_thousand_in_one_call,
    test_stale_lease_is_refused,
    test_strict_priority_then_fifo,
)
