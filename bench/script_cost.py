"""Redis time per task of each hot-path script, measured alone: `python -m bench.script_cost`.

The batch scenario's Redis CPU is mostly Lua: submit.lua, claim.lua and ack.lua run once per
task each. This drives the scheduler's own Store against a private redis-server with no
other process running (no scheduler, no worker), phase by phase, and reads Redis' own
account of the time (INFO commandstats: `evalsha` for the script with the commands it ran).
It is steadier than the end-to-end scenario, so a change to a script can be judged here.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
from pathlib import Path

import redis

from bench.common import private_redis
from bench.measure import RedisCalls
from conveyor.v1 import task_pb2
from conveyor_scheduler.config import Limits
from conveyor_scheduler.fast_redis import FastRedis
from conveyor_scheduler.routing import Router
from conveyor_scheduler.store import AckEntry, Store
from conveyor_scheduler.validation import check_spec

QUEUE = "default"


async def _phases(url: str, client: redis.Redis, n: int, batch: int, names: list[str]) -> dict[str, float]:
    fast = FastRedis(url)
    store = Store(None, result_ttl_ms=3_600_000, default_timeout_ms=300_000, fast=fast)  # type: ignore[arg-type]
    now = store.clock()
    specs = [task_pb2.TaskSpec(name="bench.add", queue=QUEUE, payload=f"[{i}, {i}]".encode()) for i in range(n)]
    tasks = [check_spec(s, "t", limits=Limits(), router=Router(), now_ms=now, default_timeout_ms=300_000,
                        default_window_ms=0) for s in specs]
    out: dict[str, float] = {}

    def script_usec(calls: RedisCalls) -> float:
        return float(calls.per_task(n)["redis_usec_per_task"].get("evalsha", 0.0))  # type: ignore[attr-defined]

    calls = RedisCalls(client).start()
    for i in range(0, n, batch):
        await store.submit(tasks[i:i + batch])
    out["submit"] = script_usec(calls)
    leased: list[tuple[str, str]] = []
    calls.start()
    while len(leased) < n:
        claimed = await store.claim(QUEUE, batch, "w1", 30_000, owner="stream-1", names=names)
        leased += [(r[b"id"].decode(), r[b"lt"].decode()) for r in claimed.records]
    out["claim"] = script_usec(calls)
    calls.start()
    for i in range(0, n, batch):
        await store.ack([(QUEUE, AckEntry(tid, tok, "s", b"42", "")) for tid, tok in leased[i:i + batch]])
    out["ack"] = script_usec(calls)
    out["total"] = out["submit"] + out["claim"] + out["ack"]
    await store.aclose()
    return {k: round(v, 2) for k, v in out.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=50_000, help="tasks per round")
    parser.add_argument("--batch", type=int, default=1000, help="tasks per script call")
    parser.add_argument("--rounds", type=int, default=3, help="rounds; the lowest figure of each phase is kept")
    parser.add_argument("--names", nargs="*", default=["bench.add", "bench.sleep", "bench.noop"],
                        help="task names the claiming worker declares (none: any name)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="conveyor-script-cost-") as tmp:
        server, client = private_redis(Path(tmp), "redis")
        try:
            rounds = []
            for r in range(args.rounds):
                client.flushall()
                rounds.append(asyncio.run(_phases(f"redis://127.0.0.1:{server.port}/0", client, args.n, args.batch,
                                                  args.names)))
                print(f"round {r + 1}: Redis µs per task {rounds[-1]}")
            best = {phase: min(rnd[phase] for rnd in rounds) for phase in rounds[0]}
            print(json.dumps({"redis_usec_per_task": best}))
        finally:
            server.stop()


if __name__ == "__main__":
    main()
