"""tests/e2e/test_workers.py on a Redis Cluster: priorities, several queues, a SIGKILLed worker's
tasks finishing elsewhere exactly once, two replicas, SIGTERM, the reaper, replica failover."""

from tests.e2e.test_workers import *  # noqa: F403
from tests.e2e.test_workers import test_embedded_redis_keeps_queued_tasks_across_restart

del test_embedded_redis_keeps_queued_tasks_across_restart  # no Redis URL: the embedded one-server Redis
