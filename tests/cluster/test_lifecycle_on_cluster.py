"""tests/e2e/test_lifecycle.py on a Redis Cluster: delays, retries with backoff into dead letters
and back, expiry, cancel, dedup, time limits, watch, rate limits across replicas."""

from tests.e2e.test_lifecycle import *  # noqa: F403
