"""Child process of measure.Completions: counts completion messages on Redis pub/sub.

    python -m bench.listener URL CHANNEL EXPECT TIMEOUT OUTFILE [--strip PREFIX]

Prints "ready" once subscribed, then writes "MONOTONIC_TIME TASK_ID" per message to OUTFILE
when EXPECT messages arrived (exit 0) or TIMEOUT seconds passed (exit 2).
"""

from __future__ import annotations

import argparse
import sys
import time

import redis


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("url")
    ap.add_argument("channel")
    ap.add_argument("expect", type=int)
    ap.add_argument("timeout", type=float)
    ap.add_argument("out")
    ap.add_argument("--strip", default="")
    args = ap.parse_args()
    pubsub = redis.Redis.from_url(args.url).pubsub()
    if "*" in args.channel:
        pubsub.psubscribe(args.channel)
    else:
        pubsub.subscribe(args.channel)
    confirmed = None
    give_up = time.monotonic() + 30
    while confirmed is None or confirmed["type"] not in ("subscribe", "psubscribe"):
        if time.monotonic() > give_up:
            print("no subscription confirmed", flush=True)
            return 3
        confirmed = pubsub.get_message(timeout=5.0)  # Redis has the subscription once it confirms
    print("ready", flush=True)
    deadline = time.monotonic() + args.timeout
    stamps: list[tuple[float, bytes]] = []
    strip = args.strip.encode()
    by_channel = bool(strip)
    get = pubsub.get_message
    while len(stamps) < args.expect:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        msg = get(timeout=min(left, 1.0))
        if msg is None or msg["type"] not in ("message", "pmessage"):
            continue
        now = time.monotonic()
        stamps.append((now, msg["channel"][len(strip):] if by_channel else msg["data"]))
    with open(args.out, "w") as f:
        f.writelines(f"{at:.6f} {task_id.decode()}\n" for at, task_id in stamps)
    pubsub.close()
    return 0 if len(stamps) >= args.expect else 2


if __name__ == "__main__":
    sys.exit(main())
