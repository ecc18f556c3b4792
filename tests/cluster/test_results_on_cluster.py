"""The core of tests/integration/test_results.py on a Redis Cluster: waiting for results and failures,
a duplicate submit's wait, wait_many."""

from tests.integration.test_results import (  # noqa: F401 - collected by pytest
    test_duplicate_submit_with_wait_results_waits_for_the_existing_task,
    test_failure_is_reported_with_its_error,
    test_wait_many_wakes_on_completion,
    test_wait_returns_when_the_task_completes,
)
