"""tests/integration/test_beat.py on a Redis Cluster: schedules fired through the submit path, pause,
fire now, updates, deletes, DST."""

from tests.integration.test_beat import *  # noqa: F403
