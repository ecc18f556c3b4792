"""Child process of measure.Completions: counts completion messages on Redis pub/sub.

    python -m bench.listener URL CHANNEL EXPECT TIMEOUT OUTFILE [--strip PREFIX] [--shard URL CHANNEL ...]

Prints "ready" once subscribed, then writes "MONOTONIC_TIME TASK_ID CHANNEL" per message to
OUTFILE when EXPECT messages arrived (exit 0) or TIMEOUT seconds passed (exit 2).

CHANNEL ('' for none) is a classic channel on URL, subscribed as a pattern when it contains
'*'. Each --shard is a Redis Cluster shard channel (SSUBSCRIBE) on the node at its URL: the
primary that owns the channel's slot (Conveyor on a cluster publishes a queue's completions on
cv:{q:QUEUE}:done there). Channels of one URL share one connection; several connections are
read by a thread each.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from typing import Any

import redis

CONFIRMATIONS = ("subscribe", "psubscribe", "ssubscribe")
MESSAGES = ("message", "pmessage", "smessage")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("url")
    ap.add_argument("channel")
    ap.add_argument("expect", type=int)
    ap.add_argument("timeout", type=float)
    ap.add_argument("out")
    ap.add_argument("--strip", default="")
    ap.add_argument("--shard", nargs=2, action="append", default=[], metavar=("URL", "CHANNEL"))
    args = ap.parse_args()
    subs: dict[str, tuple[Any, list[int]]] = {}  # url -> (pubsub, [subscriptions to confirm])

    def pubsub(url: str) -> tuple[Any, list[int]]:
        if url not in subs:
            subs[url] = (redis.Redis.from_url(url).pubsub(), [0])
        return subs[url]

    if args.channel:
        ps, due = pubsub(args.url)
        if "*" in args.channel:
            ps.psubscribe(args.channel)
        else:
            ps.subscribe(args.channel)
        due[0] += 1
    for url, channel in args.shard:
        ps, due = pubsub(url)
        ps.ssubscribe(channel)
        due[0] += 1
    give_up = time.monotonic() + 30
    for ps, due in subs.values():
        while due[0] > 0:  # Redis has a subscription once it confirms it
            if time.monotonic() > give_up:
                print("no subscription confirmed", flush=True)
                return 3
            confirmed = ps.get_message(timeout=5.0)
            if confirmed is not None and confirmed["type"] in CONFIRMATIONS:
                due[0] -= 1
    print("ready", flush=True)
    deadline = time.monotonic() + args.timeout
    stamps: list[tuple[float, bytes, bytes]] = []
    strip = args.strip.encode()
    by_channel = bool(strip)
    lock = threading.Lock()

    def listen(ps: Any, shared: bool) -> None:
        get = ps.get_message
        while len(stamps) < args.expect:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            msg = get(timeout=min(left, 0.2 if shared else 1.0))
            if msg is None or msg["type"] not in MESSAGES:
                continue
            now = time.monotonic()
            stamp = (now, msg["channel"][len(strip):] if by_channel else msg["data"], msg["channel"])
            if shared:
                with lock:
                    stamps.append(stamp)
            else:
                stamps.append(stamp)

    if len(subs) == 1:
        listen(next(iter(subs.values()))[0], shared=False)
    else:
        threads = [threading.Thread(target=listen, args=(ps, True), daemon=True) for ps, _ in subs.values()]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        stamps.sort()
    with open(args.out, "w") as f:
        f.writelines(f"{at:.6f} {task_id.decode()} {channel.decode()}\n" for at, task_id, channel in stamps)
    for ps, _ in subs.values():
        ps.close()
    return 0 if len(stamps) >= args.expect else 2


if __name__ == "__main__":
    sys.exit(main())
