"""The core of tests/integration/test_metrics.py on a Redis Cluster: /metrics' fleet gauges through the
synchronous cluster client, two replicas counted once."""

from tests.integration.test_metrics import (  # noqa: F401 - collected by pytest
    test_depth_gauges_and_otel_counters,
    test_two_replicas_export_fleet_gauges_once,
)
