"""The core of tests/integration/test_stream_leases.py on a Redis Cluster: a lease adopted by a new
stream, a stale ack on the stream."""

from tests.integration.test_stream_leases import (  # noqa: F401 - collected by pytest
    test_a_stale_ack_on_the_stream_is_answered_even_without_a_seq,
    test_an_adopted_lease_is_not_handed_back_when_the_old_stream_breaks,
)
