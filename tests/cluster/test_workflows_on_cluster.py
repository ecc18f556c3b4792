"""tests/e2e/test_workflows.py on a Redis Cluster: chains, groups, chords (nested), fail-fast and
continue policies, cancel, retry, watch."""

from tests.e2e.test_workflows import *  # noqa: F403
