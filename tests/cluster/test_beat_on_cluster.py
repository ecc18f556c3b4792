"""The core of tests/integration/test_beat.py on a Redis Cluster: a schedule fired through the submit
path, pause and resume, cron across DST with an injected clock."""

from tests.integration.test_beat import (  # noqa: F401 - collected by pytest
    db,
    test_a_schedule_fires_through_the_submit_path,
    test_cron_in_berlin_across_dst_and_downtime_with_an_injected_clock,
    test_pause_and_resume,
)
