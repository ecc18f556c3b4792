"""The core of tests/e2e/test_workers.py on a Redis Cluster: a SIGKILLed worker's tasks finish
elsewhere exactly once, a worker fails over to the next replica."""

from tests.e2e.test_workers import (  # noqa: F401 - collected by pytest
    test_sigkilled_worker_tasks_finish_elsewhere_exactly_once,
    test_worker_fails_over_to_the_next_replica,
)
