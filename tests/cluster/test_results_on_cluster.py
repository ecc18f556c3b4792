"""tests/integration/test_results.py on a Redis Cluster: waiting for results, failures, TTLs, the async
client, run() and wait_many."""

from tests.integration.test_results import *  # noqa: F403
