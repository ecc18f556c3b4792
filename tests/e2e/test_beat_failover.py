"""Beat failover: two scheduler replicas, two 1-second schedules for 60 seconds, and the beat
leader killed with SIGKILL half way through.

Every fire time must be submitted exactly once (counted from the task records in Redis),
except fire times inside the failover window, which follow each schedule's catch-up policy:
SKIP drops them, FIRE_ONCE submits one late task for all of them. Dropped and folded fire
times must be counted in the schedule's missed_count (never silent). The test prints the
longest gap between consecutive submissions:

    .venv/bin/pytest tests/e2e/test_beat_failover.py -q -s
"""

from __future__ import annotations

import datetime as dt
import itertools
import time
from collections import Counter, defaultdict

import redis

from conveyor import Client
from conveyor.v1 import schedule_service_pb2 as pb
from conveyor_scheduler.ids import parse_task_id
from tests.harness import Cluster, redis_client, wait_for

LEASE = 3.0  # seconds; renewed every second, so a follower takes over 2 to 3 s after a SIGKILL
RUN = 60  # fire times per schedule, one per second
KILL_AFTER = 30  # fire times before the leader is killed
GRACE_MS = 1000  # the scheduler's misfire grace (SchedulerConfig.beat_misfire_grace_ms)
SLACK_MS = 300  # tolerance for "on time" on a busy test machine


def tasks_by_fire_time(db: redis.Redis, schedule_id: str) -> dict[int, list[int]]:
    """fire time ms -> creation ms of every task submitted for it (from the task records)."""
    out: dict[int, list[int]] = defaultdict(list)
    for key in db.scan_iter(match="cv:{q:default}:t:*", count=1000):
        name, _, fire_time = (db.hget(key, "k") or b"").decode().partition("@")
        if name == schedule_id:
            task_id = key.decode().rpartition(":")[2]
            fired = dt.datetime.fromisoformat(fire_time.replace("Z", "+00:00"))
            out[int(fired.timestamp() * 1000)].append(parse_task_id(task_id)[0])
    return dict(out)


def test_leader_sigkill_fires_every_time_once_and_gaps_follow_the_catchup_policy(
        cluster: Cluster, redis_url: str) -> None:
    lease = ("--beat-lease", str(LEASE))
    procs = {}
    targets = {}
    for name in ("beat-a", "beat-b"):
        procs[name], targets[name] = cluster.scheduler(redis_url, *lease, "--scheduler-id", name, name=name)
    db = redis_client(redis_url)
    leader = db.get("cv:{beat}:leader").decode().partition("/")[0]
    follower = next(n for n in procs if n != leader)
    start = dt.datetime.fromtimestamp(int(time.time()) + 2, dt.UTC)
    start_ms = int(start.timestamp() * 1000)
    expected = [start_ms + 1000 * k for k in range(RUN)]
    policies = {"tick-skip": "skip", "tick-once": "fire_once"}
    with Client(targets[follower]) as client:  # created on the follower: the leader hears of it by pub/sub
        for sid, policy in policies.items():
            client.schedules.create(sid, "t.add", [1, 1], every=1, start=start,
                                    end=start + dt.timedelta(seconds=RUN - 1), catchup=policy)
        wait_for(lambda: client.schedules.get("tick-skip").fire_count >= KILL_AFTER, KILL_AFTER + 15,
                 what=f"{KILL_AFTER} firings")
        # kill half way between two fire times: with the lease above, the next fire time is at least
        # 1.5 s late when the follower takes over, so both catch-up policies really get exercised
        wait_for(lambda: (time.time() * 1000 - start_ms) % 1000 >= 500, 2, interval=0.005, what="mid-interval")
        assert db.get("cv:{beat}:leader").decode().startswith(leader + "/")
        procs[leader].kill()  # SIGKILL: no lease hand-over, the follower must wait for it to lapse
        kill_ms = int(time.time() * 1000)
        wait_for(lambda: all(client.schedules.get(s).state == pb.SCHEDULE_STATE_ENDED for s in policies),
                 RUN - KILL_AFTER + 30, what="both schedules to reach their end time")
        assert client.schedules.beat_leader() == follower
        stored = {s: client.schedules.get(s) for s in policies}

    fired = {sid: tasks_by_fire_time(db, sid) for sid in policies}
    after_kill = [c for by_time in fired.values() for created in by_time.values() for c in created if c > kill_ms]
    takeover_ms = min(after_kill)
    report = []
    for sid, policy in policies.items():
        by_time = fired[sid]
        counts = Counter({t: len(c) for t, c in by_time.items()})
        assert not [t for t, n in counts.items() if n > 1], f"{sid}: fire times submitted twice"
        assert set(by_time) <= set(expected), f"{sid}: fire times off the schedule"
        missing = sorted(set(expected) - set(by_time))
        outside = [t for t in missing if not kill_ms - 1500 < t <= takeover_ms]
        assert not outside, f"{sid}: fire times lost outside the failover window: {outside}"
        late = sorted(t for t, created in by_time.items() if created[0] - t > GRACE_MS + SLACK_MS)
        # The kill lands half way between fire times and the takeover comes 2 to 3 s later, so at
        # least the next fire time is found more than the grace late.
        if policy == "skip":
            assert missing, f"{sid}: the failover window was too short to miss a fire time"
            assert late == [], f"{sid}: SKIP submitted late catch-up firings {late}"
        else:  # one late task stands for the whole gap; the fire times it folded in follow it
            assert len(late) == 1 and kill_ms - 1500 < late[0] <= takeover_ms, f"{sid}: catch-up firings {late}"
            assert missing == [late[0] + 1000 * k for k in range(1, len(missing) + 1)], (sid, late, missing)
        assert stored[sid].missed_count == len(missing), f"{sid}: missed fire times not all counted"
        assert stored[sid].fire_count == len(by_time)
        created = [by_time[t][0] for t in sorted(by_time)]
        gap = max(b - a for a, b in itertools.pairwise(created)) / 1000
        assert gap < LEASE + 1 + 2.5, f"{sid}: a {gap:.2f}s gap is more than lease + interval + slack"
        report.append((gap, sid, len(missing), len(late)))
    gap, sid = max(report)[:2]
    print(f"\nbeat failover: longest gap {gap:.2f}s ({sid}); leader {leader} SIGKILLed, {follower} fired again "
          f"{(takeover_ms - kill_ms) / 1000:.2f}s later; " + "; ".join(
              f"{s}: {m} fire time(s) missed, {lc} late catch-up" for _, s, m, lc in sorted(report, key=lambda r: r[1]))
          + f"; {RUN} fire times each, none submitted twice")
