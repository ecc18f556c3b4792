"""tests/e2e/test_beat_failover.py on a Redis Cluster: the beat leader SIGKILLed: every firing exactly
once."""

from tests.e2e.test_beat_failover import *  # noqa: F403
