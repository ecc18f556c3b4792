"""tests/e2e/test_worker_control.py on a Redis Cluster: drain, shutdown and concurrency changes of
a worker, asked of whichever replica."""

from tests.e2e.test_worker_control import *  # noqa: F403
