"""The core of tests/e2e/test_worker_control.py on a Redis Cluster: a worker drained through whichever
replica is asked."""

from tests.e2e.test_worker_control import (  # noqa: F401 - collected by pytest
    test_drained_worker_finishes_what_it_holds_and_takes_nothing_new,
)
