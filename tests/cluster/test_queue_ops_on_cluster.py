"""tests/integration/test_queue_ops.py on a Redis Cluster: the admin listings (queues, rates, history,
tasks), pause and resume on every replica, purge, bulk cancel and retry."""

from tests.integration.test_queue_ops import *  # noqa: F403
from tests.integration.test_queue_ops import (
    test_lib_lua_reads_the_creation_time_of_any_task_id,
    test_purge_of_100k_keeps_redis_answering,
)

# Not on the cluster: one server's slow log measures purge's longest script call, and lib.lua's
# id arithmetic is probed with keys of many slots; neither is about the cluster.
del test_purge_of_100k_keeps_redis_answering, test_lib_lua_reads_the_creation_time_of_any_task_id
