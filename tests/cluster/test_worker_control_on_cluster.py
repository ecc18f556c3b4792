"""tests/e2e/test_worker_control.py on a Redis Cluster: drain, shutdown and concurrency changes of a worker from whichever replica is asked."""

from tests.e2e.test_worker_control import *  # noqa: F403
