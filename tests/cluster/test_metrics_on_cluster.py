"""tests/integration/test_metrics.py on a Redis Cluster: /metrics with the fleet-wide gauges read
through the synchronous cluster client."""

from tests.integration.test_metrics import *  # noqa: F403
