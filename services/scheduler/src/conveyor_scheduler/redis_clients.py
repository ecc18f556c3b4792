"""What a Redis URL names, and the clients the scheduler opens on it: the one place that reads
the URL's scheme.

- `redis://`, `rediss://` (TLS) and `unix://` name one server (or a Valkey).
- `redis+cluster://[user:password@]host:port[,host:port...][?query]` and
  `rediss+cluster://...` name a Redis Cluster by its seed nodes (any reachable node will do;
  the clients learn the rest with CLUSTER SLOTS). The query takes rediss://'s TLS parameters
  (`ssl_ca_certs`, `ssl_certfile`, ...); a cluster has no database number.

Every scheduler connection is built here: redis-py's client (async, for everything off the hot
path; sync, for the metrics threads), and the hot path's hiredis connection (FastRedis on one
server, FastCluster on a cluster).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import unquote

import redis
import redis.cluster
from redis.asyncio import Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.commands.core import AsyncScript, Script
from redis.exceptions import NoScriptError

from conveyor_scheduler import fast_redis
from conveyor_scheduler.fast_cluster import FastCluster
from conveyor_scheduler.fast_redis import FastRedis

CLUSTER_SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}

AsyncRedis = Redis | RedisCluster
"""The scheduler's redis-py client: one server or a cluster (the same command methods)."""
SyncRedis = redis.Redis | redis.cluster.RedisCluster


def is_cluster(url: str) -> bool:
    return url.partition("://")[0] in CLUSTER_SCHEMES


def cluster_seeds(url: str) -> tuple[str, list[tuple[str, int]]]:
    """A cluster URL's one-node form for its first seed (scheme, credentials and query kept),
    and every seed as (host, port)."""
    scheme, _, rest = url.partition("://")
    if scheme not in CLUSTER_SCHEMES:
        raise ValueError(f"not a cluster URL: {scheme}://")
    rest, _, query = rest.partition("?")
    rest, _, path = rest.partition("/")
    if path.strip("/") not in ("", "0"):
        raise ValueError("a Redis Cluster has only database 0: drop the /DB from the URL")
    userinfo, _, hosts = rest.rpartition("@")
    seeds: list[tuple[str, int]] = []
    for hostport in hosts.split(","):
        host, _, port = hostport.strip().rpartition(":")
        if not host:
            host, port = port, "6379"
        if port and not port.isdigit():
            raise ValueError(f"{hostport.strip()!r} has no port number")
        seeds.append((unquote(host.strip("[]")), int(port or 6379)))
    if not seeds or not seeds[0][0]:
        raise ValueError("a cluster URL names at least one host:port")
    host, port = seeds[0]
    one = f"{CLUSTER_SCHEMES[scheme]}://{userinfo + '@' if userinfo else ''}{host}:{port}"
    return (f"{one}?{query}" if query else one), seeds


def check_url(url: str, client: str = "hiredis", wait_replicas: int = 0) -> None:
    """Refuses, before anything connects, a URL no client here takes (ValueError naming the
    flag), and --redis-wait-replicas where it cannot work: WAIT runs on the hot path's hiredis
    connection, which redis-py's client and unknown schemes do not have."""
    if is_cluster(url):
        try:
            cluster_seeds(url)
        except ValueError as exc:
            raise ValueError(f"--redis-url: {exc}") from None
    elif not FastRedis.supports(url):  # the schemes redis-py's client takes too
        schemes = ", ".join(f"{s}://" for s in (*fast_redis.SCHEMES, *CLUSTER_SCHEMES))
        raise ValueError(f"--redis-url: {url.partition('://')[0] or url!r} is not a Redis URL scheme here: "
                         f"use {schemes}")
    if wait_replicas and client != "hiredis":
        raise ValueError("--redis-wait-replicas: WAIT runs on the hiredis connection; drop --redis-client redis-py")


def async_client(url: str, **options: Any) -> AsyncRedis:
    """redis-py's asyncio client for `url` (a RedisCluster for a cluster URL)."""
    if not is_cluster(url):
        return Redis.from_url(url, **options)
    first, seeds = cluster_seeds(url)
    options.pop("health_check_interval", None)  # per node connection pools: not a cluster option
    return RedisCluster.from_url(first, startup_nodes=[ClusterNode(h, p) for h, p in seeds], **options)


def sync_client(url: str, **options: Any) -> SyncRedis:
    """redis-py's synchronous client for `url`, for threads off the event loop."""
    if not is_cluster(url):
        return redis.Redis.from_url(url, **options)
    first, seeds = cluster_seeds(url)
    return redis.cluster.RedisCluster.from_url(
        first, startup_nodes=[redis.cluster.ClusterNode(h, p) for h, p in seeds], **options)


def fast_client(url: str, *, wait_timeout_ms: int = 1000) -> FastRedis | FastCluster | None:
    """The hot path's hiredis connection for `url`, or None for a scheme it does not take."""
    if is_cluster(url):
        first, seeds = cluster_seeds(url)
        return FastCluster(first, seeds, wait_timeout_ms=wait_timeout_ms)
    if FastRedis.supports(url):
        return FastRedis(url, wait_timeout_ms=wait_timeout_ms)
    return None


ScriptCalls = Sequence[tuple[Sequence[str], Sequence[Any]]]


async def pipelined(redis: AsyncRedis, script: AsyncScript, calls: ScriptCalls) -> list[Any]:
    """One pipeline of `script` calls (keys, args). redis-py's one-server pipeline loads a
    missing script itself, its cluster pipeline does not: on NOSCRIPT the script is loaded (on
    every primary) and the calls sent again, which the scripts allow (see server.py)."""
    for attempt in (0, 1):
        pipe = redis.pipeline(transaction=False)
        for keys, args in calls:
            await script(keys=keys, args=args, client=pipe)
        try:
            return list(await pipe.execute())
        except NoScriptError:
            if attempt:
                raise
            await redis.script_load(script.script)
    raise AssertionError("unreachable")  # pragma: no cover


def pipelined_sync(redis: SyncRedis, script: Script, calls: ScriptCalls, more: Any = None) -> list[Any]:
    """`pipelined` for a synchronous client; `more(pipe, index)` may queue further commands
    after each call's script."""
    for attempt in (0, 1):
        pipe = redis.pipeline(transaction=False)
        for index, (keys, args) in enumerate(calls):
            script(keys=keys, args=args, client=pipe)
            if more is not None:
                more(pipe, index)
        try:
            return list(pipe.execute())
        except NoScriptError:
            if attempt:
                raise
            redis.script_load(script.script)
    raise AssertionError("unreachable")  # pragma: no cover
