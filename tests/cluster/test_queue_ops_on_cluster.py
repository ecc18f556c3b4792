"""The core of tests/integration/test_queue_ops.py on a Redis Cluster: the admin listings (depth, tasks
by filter), pause and resume on every replica, bulk cancel and retry."""

from tests.integration.test_queue_ops import (  # noqa: F401 - collected by pytest
    stubs,
    test_bulk_cancel_and_retry_act_on_exactly_the_matching_set,
    test_list_queues_reports_depth_by_state,
    test_list_tasks_filters_combine,
    test_pause_stops_dispatch_on_every_replica_and_resume_keeps_order,
)
