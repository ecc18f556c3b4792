"""The core of tests/e2e/test_workflows.py on a Redis Cluster: chains, chords, the fail-fast policy,
cancel, retry and watch."""

from tests.e2e.test_workflows import (  # noqa: F401 - collected by pytest
    test_cancel_a_running_workflow,
    test_chain_passes_each_result_to_the_next_step,
    test_chord_of_ten_headers_sums_them,
    test_fail_fast_names_the_failed_node_and_the_callback_never_runs,
    test_retry_runs_only_the_nodes_that_did_not_succeed,
    test_watch_sees_every_node_finish,
    workers,
)
