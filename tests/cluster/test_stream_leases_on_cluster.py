"""tests/integration/test_stream_leases.py on a Redis Cluster: leases adopted and handed back across
streams, stale acks, lease extension."""

from tests.integration.test_stream_leases import *  # noqa: F403
