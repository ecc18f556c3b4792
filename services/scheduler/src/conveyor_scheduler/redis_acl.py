"""The least Redis ACL a scheduler needs: the commands it sends, keys and channels under `cv:`.

Redis checks the commands a Lua script runs against the calling user's ACL too, so the rule
holds both the commands sent directly (EVALSHA, SCRIPT LOAD/EXISTS, the admin reads, pub/sub)
and every command inside lua/*.lua; tests/unit/test_redis_acl.py keeps it in step with the
scripts and with docs/ARCHITECTURE.md, and tests/integration/test_redis_tls.py runs a cluster
under it. `python -m conveyor_scheduler.redis_acl USER PASSWORD` prints the ACL SETUSER line.
"""

from __future__ import annotations

import hashlib
import sys

DIRECT = ("ping", "select", "evalsha", "script|load", "script|exists", "subscribe", "unsubscribe", "publish",
          "get", "set", "mget", "exists", "del", "pttl", "hget", "hgetall", "hkeys", "hlen", "hscan", "zrange",
          "zrangebylex", "zrangebyscore", "zremrangebyscore", "zcard", "xgroup|create", "xreadgroup", "xack",
          "xautoclaim", "wait", "spublish", "ssubscribe", "asking", "cluster|slots", "cluster|shards", "command")
"""Sent by the scheduler itself (redis-py and FastRedis). WAIT is --redis-wait-replicas'; on a Redis
Cluster the clients also read the slot map (CLUSTER SLOTS/SHARDS, COMMAND), follow an ASK
redirection (ASKING) and use shard channels (SPUBLISH, SSUBSCRIBE). The workflow outboxes' consumer group
(workflow_store.py) also sends hmget, lrange, sadd, smembers, zadd, zrem and xdel, listed below
with the scripts that use them."""
SCRIPTED = ("hset", "hmget", "hdel", "hincrby", "hexists", "pexpire", "persist", "incr", "decr", "bitfield",
            "rpush", "lpush", "lpop", "lrange", "llen", "sadd", "srem", "smembers", "sismember", "zadd", "zrem",
            "zpopmin", "zcount", "xadd", "xrange", "xrevrange", "xdel")
"""Run only inside the Lua scripts (besides those of DIRECT they use too)."""
COMMANDS = DIRECT + SCRIPTED
KEYS = "~cv:*"
CHANNELS = "&cv:*"


def _rights() -> str:
    return f"{KEYS} {CHANNELS} -@all " + " ".join(f"+{c}" for c in COMMANDS)


def acl_rule(user: str = "conveyor", password: str = "SECRET") -> str:
    """The ACL SETUSER command that creates (or resets) the scheduler's Redis user."""
    return f"ACL SETUSER {user} reset on >{password} {_rights()}"


def acl_file_line(user: str, password: str) -> str:
    """The same user as a line of an ACL file (redis-server --aclfile), its password kept as its
    SHA-256 only."""
    return f"user {user} on #{hashlib.sha256(password.encode()).hexdigest()} {_rights()}"


if __name__ == "__main__":
    print(acl_rule(*sys.argv[1:3]))
