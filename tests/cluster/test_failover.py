"""Durability across a primary failover (--redis-wait-replicas), on a real Redis Cluster.

Each test is one round of tests/cluster/failover_run.py: two scheduler replicas, three workers
and four producers on a private 3+3 cluster; 2,000 tasks (about 1,500 queued or running when
the fault comes, the last submits still flowing) on a queue whose primary is SIGKILLed; its
replica takes over (node timeout 1 s), the killed node comes back as the new replica, and the
round finishes.

Faults: "kill" is the SIGKILL alone; "lag" cuts the primary's replication link first and kills
it once it holds writes its replica lacks, the window asynchronous replication loses writes in
(on loopback a bare SIGKILL rarely opens it: what the process wrote to its sockets still
reaches the replica).

With --redis-wait-replicas 1 nothing acknowledged may be lost under either fault: every
submit the producers were answered still exists, every result the scheduler confirmed to a
worker is still that same record, every task ends SUCCEEDED with its own sum, exactly one task
per submitted key, and both scheduler replicas still serve. Without WAIT the same rounds
report what was lost (one summary line each, printed past pytest's capture); the "lag" round
must see a loss, which shows the checks above would catch one.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from tests.cluster.failover_run import Outcome, Round, run_round
from tests.harness import Cluster
from tests.redis_cluster import RedisClusterServers


def _round(private_cluster: RedisClusterServers, cluster: Cluster, tmp_path: Path, capsys: pytest.CaptureFixture[str],
           cfg: Round) -> Outcome:
    out = run_round(private_cluster, cluster, tmp_path / "work", cfg)
    with capsys.disabled():
        print(f"\n{out.summary()}")
    # What holds whatever WAIT says: the round ran as designed, nothing wrong was recorded, no
    # key has two tasks, every key was eventually acknowledged, and the schedulers still serve.
    assert out.in_flight_at_kill >= 500, out.summary()  # about 1,500 (fewer only on a starved machine)
    assert out.submitted == cfg.tasks and not out.unacknowledged_keys, out.unacknowledged_keys[:10]
    assert not out.wrong, f"{len(out.wrong)} tasks did not end SUCCEEDED with their sum: {out.wrong[:10]}"
    assert not out.extra_tasks, f"tasks no acknowledged submit returned: {out.extra_tasks[:10]}"
    assert math.isfinite(out.first_submit_s), "no submit was acknowledged after the failover"
    assert out.schedulers_serving, f"a scheduler replica died or stopped serving: {out.log_excerpts}"
    return out


@pytest.mark.parametrize("fault", ["kill", "lag"])
def test_with_wait_replicas_nothing_acknowledged_is_lost(fault: str, private_cluster: RedisClusterServers,
                                                         cluster: Cluster, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    out = _round(private_cluster, cluster, tmp_path, capsys, Round(wait_replicas=1, fault=fault))
    assert not out.lost_submits, f"{len(out.lost_submits)} acknowledged submits vanished: {out.lost_submits[:10]}"
    assert not out.lost_results, (f"{len(out.lost_results)} results confirmed to a worker did not survive: "
                                  f"{out.lost_results[:10]}")
    if fault == "lag":  # writes were pending on the primary alone: WAIT held their answers back
        assert out.unreplicated_bytes > 0, out.summary()


@pytest.mark.parametrize("fault", ["kill", "lag"])
def test_without_wait_the_round_reports_what_was_lost(fault: str, private_cluster: RedisClusterServers,
                                                      cluster: Cluster, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    out = _round(private_cluster, cluster, tmp_path, capsys, Round(wait_replicas=0, fault=fault))
    if fault == "lag":  # writes acknowledged while the replica could not have them: they are gone
        assert out.acknowledged_while_cut >= Round(0).lag_acknowledged, out.summary()
        assert out.lost_submits or out.lost_results, f"the checks saw no loss: {out.summary()}"
