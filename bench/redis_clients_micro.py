"""Redis clients side by side on the scheduler's hot-path call: `python -m bench.redis_clients_micro`.

Every client issues the same EVALSHA: submit.lua as the scheduler loads it
(conveyor_scheduler.store.script_text("submit")), with the KEYS and ARGV that Store.submit
builds for one `bench.add` task (the SDK's TaskSpec, validated as the scheduler does), a
fresh task id per call, spread over three queues. On the cluster the three queues are on
three different primaries, so a cluster client routes each call by its slot; on one server
the same keys are all there. The clients, each with its own script helper (the way an
application calls a script with it; every one sends EVALSHA, loading the script on NOSCRIPT):

    ours          FastRedis / FastCluster (conveyor_scheduler.fast_redis, .fast_cluster)
    redis-py      redis.asyncio Redis / RedisCluster, opened as the scheduler's --redis-client
                  redis-py opens them (redis_clients.async_client)
    coredis       coredis.Redis / coredis.RedisCluster
    valkey-glide  GlideClient / GlideClusterClient (a Rust core on threads of this process)

Per client and topology: a warm-up, then N calls from 64 concurrent asyncio callers, all in
this one process on one event loop (uvloop, as the scheduler runs). Reported: calls/s, and
this process's CPU µs per call (user + system of all its threads: glide's Rust threads
count). Clients take turns, in a rotated order each round; each figure is the median of the
rounds. Every reply is checked (the task id it returns) and so is every task stored (the
ready lists hold warm-up + N ids after each measurement). Nothing else runs meanwhile, but
Redis shares the machine: on 2 cores a client's CPU per call is the steadier figure.

    python -m bench.redis_clients_micro                       # own redis-server and cluster
    python -m bench.redis_clients_micro --calls 20000 --rounds 3
    python -m bench.redis_clients_micro --redis-url redis://127.0.0.1:6379/0 \\
        --cluster-url redis+cluster://127.0.0.1:7000 --json out.json
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `tests` and `bench` from any working directory
    sys.path.insert(0, str(ROOT))

import redis  # noqa: E402
import redis.cluster  # noqa: E402
from redis.asyncio.retry import Retry  # noqa: E402
from redis.backoff import ExponentialBackoff  # noqa: E402
from redis.crc import key_slot  # noqa: E402
from redis.exceptions import ConnectionError as RedisConnectionError  # noqa: E402
from redis.exceptions import TimeoutError as RedisTimeoutError  # noqa: E402

from conveyor import Call  # noqa: E402
from conveyor_scheduler.config import Limits  # noqa: E402
from conveyor_scheduler.fast_redis import Script  # noqa: E402
from conveyor_scheduler.redis_clients import async_client, cluster_seeds, fast_client, is_cluster  # noqa: E402
from conveyor_scheduler.routing import Router  # noqa: E402
from conveyor_scheduler.store import Store, script_text  # noqa: E402
from conveyor_scheduler.validation import check_spec  # noqa: E402

CONCURRENCY = 64
FAMILIES = ("ours", "redis-py", "coredis", "valkey-glide")
CLIENT_NAMES = {
    ("ours", "single"): "FastRedis", ("ours", "cluster"): "FastCluster",
    ("redis-py", "single"): "redis.asyncio.Redis", ("redis-py", "cluster"): "redis.asyncio.RedisCluster",
    ("coredis", "single"): "coredis.Redis", ("coredis", "cluster"): "coredis.RedisCluster",
    ("valkey-glide", "single"): "glide.GlideClient", ("valkey-glide", "cluster"): "glide.GlideClusterClient",
}
SCRIPT = script_text("submit")
QUEUE_PREFIX = "micro"
Invoke = Callable[[Sequence[str], Sequence[str | bytes]], Awaitable[Any]]


def versions() -> dict[str, str]:
    """The installed version of each client library (or why it is missing)."""
    from importlib import metadata  # noqa: PLC0415

    out = {}
    for family, dist in (("redis-py", "redis"), ("hiredis", "hiredis"), ("coredis", "coredis"),
                         ("valkey-glide", "valkey-glide")):
        try:
            out[family] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[family] = "not installed"
    return out


def missing(family: str) -> str:
    """Why a client family cannot run here ('' when it can)."""
    module = {"coredis": "coredis", "valkey-glide": "glide"}.get(family)
    if module is None:
        return ""
    try:
        __import__(module)
    except ImportError as exc:
        return f"{family} is not installed ({exc}); pip install -r bench/requirements-extra.txt"
    return ""


# -- the calls ----------------------------------------------------------------------------------

def queue_names(cluster_url: str | None) -> list[str]:
    """Three queue names: on a cluster, one on each of three primaries (by its slot map); without
    one, in the three slot ranges `redis-cli --cluster create` gives three primaries."""
    if cluster_url:
        _, seeds = cluster_seeds(cluster_url)
        client = redis.cluster.RedisCluster(host=seeds[0][0], port=seeds[0][1])
        try:
            def owner(slot: int) -> str:
                return str(client.nodes_manager.get_node_from_slot(slot).name)
            return pick_queues(owner)
        finally:
            client.close()
    return pick_queues(lambda slot: str(slot * 3 // 16384))


def pick_queues(owner: Callable[[int], str], count: int = 3, prefix: str = QUEUE_PREFIX) -> list[str]:
    """The first names PREFIX-i whose queue slot ({q:NAME}) is on `count` different owners."""
    names: dict[str, str] = {}
    for i in range(100_000):
        name = f"{prefix}-{i}"
        names.setdefault(owner(key_slot(f"{{q:{name}}}".encode())), name)
        if len(names) == count:
            return sorted(names.values())
    raise RuntimeError(f"no {count} queues on {count} different owners")


class _Capture:
    """Stands in for Store's Redis connection: keeps each submit.lua call's KEYS and ARGV and
    answers as Redis would (queue numbers, then per task: id, QUEUED, not a duplicate, ...)."""

    def __init__(self) -> None:
        self.calls: list[tuple[list[str], list[str | bytes]]] = []
        self.codes: dict[str, int] = {}

    async def run_script(self, script: Script, keys: Sequence[str], args: Sequence[Any], replicas: int = 0) -> Any:
        if script.text == SCRIPT:
            self.calls.append((list(keys), [a if isinstance(a, bytes) else str(a) for a in args]))
            return [str(args[10]).encode(), 2, 0, b"", 0, 0]
        return self.codes.setdefault(str(args[0]), len(self.codes) + 1)  # register_queue.lua


def submit_calls(count: int, queues: Sequence[str], sharded: bool) -> list[tuple[list[str], list[str | bytes]]]:
    """`count` submit.lua calls of one `bench.add(i, i)` task each, as Store.submit makes them
    (round robin over `queues`; `sharded`: a cluster's shard channel prefix in ARGV[4]).
    Every argument is a str or bytes (valkey-glide takes nothing else)."""
    capture = _Capture()
    store = Store(None, result_ttl_ms=86_400_000, default_timeout_ms=300_000, fast=capture)  # type: ignore[arg-type]
    store.sharded = sharded
    now = store.clock()

    async def build() -> None:
        for i in range(count):
            spec = Call("bench.add", [i, i]).spec()
            spec.queue = queues[i % len(queues)]
            task = check_spec(spec, "t", limits=Limits(), router=Router(), now_ms=now, default_timeout_ms=300_000,
                              default_window_ms=0)
            await store.submit([task])

    asyncio.run(build())
    return capture.calls


# -- the clients --------------------------------------------------------------------------------

@contextlib.asynccontextmanager
async def open_client(family: str, topology: str, url: str) -> AsyncIterator[Invoke]:
    """An `invoke(keys, args)` of submit.lua through one client, and its connections closed after."""
    if family == "ours":
        fast = fast_client(url)
        assert fast is not None
        script = Script(fast, SCRIPT)
        try:
            yield script
        finally:
            await fast.aclose()
    elif family == "redis-py":
        # What the scheduler opens with --redis-client redis-py (server.py), its script helper as Store uses it.
        client = async_client(url, health_check_interval=30, socket_keepalive=True,
                              retry=Retry(ExponentialBackoff(cap=0.1, base=0.01), retries=2),
                              retry_on_error=[RedisConnectionError, RedisTimeoutError])
        script = client.register_script(SCRIPT)
        try:
            yield lambda keys, args: script(keys=keys, args=args)
        finally:
            await client.aclose()
    elif family == "coredis":
        import coredis  # noqa: PLC0415

        host, port = _first_node(url)
        client = (coredis.RedisCluster(startup_nodes=[coredis.connection.TCPLocation(host, port)])
                  if topology == "cluster" else coredis.Redis(host, port))
        async with client:
            script = client.register_script(SCRIPT)
            yield lambda keys, args: script(keys=keys, args=args)
    elif family == "valkey-glide":
        import glide  # noqa: PLC0415

        host, port = _first_node(url)
        nodes = [glide.NodeAddress(host, port)]
        # 5 s per request (the default, 250 ms, is less than a loaded 2-core machine may take).
        client = await (glide.GlideClusterClient.create(glide.GlideClusterClientConfiguration(nodes,
                                                                                              request_timeout=5000))
                        if topology == "cluster" else
                        glide.GlideClient.create(glide.GlideClientConfiguration(nodes, request_timeout=5000)))
        script = glide.Script(SCRIPT)
        try:
            yield lambda keys, args: client.invoke_script(script, keys=list(keys), args=list(args))
        finally:
            await client.close()
    else:
        raise ValueError(family)


def _first_node(url: str) -> tuple[str, int]:
    """(host, port) of a redis:// URL, or of a cluster URL's first seed (coredis and glide take no URL)."""
    if is_cluster(url):
        return cluster_seeds(url)[1][0]
    parsed = urlparse(url)
    return parsed.hostname or "127.0.0.1", parsed.port or 6379


async def _drive(invoke: Invoke, calls: Sequence[tuple[list[str], list[str | bytes]]], concurrency: int) -> int:
    """Runs every call from `concurrency` callers; returns how many replies were wrong."""
    it = iter(calls)
    wrong = 0

    async def caller() -> None:
        nonlocal wrong
        for keys, args in it:
            reply = await invoke(keys, args)
            got = reply[0] if isinstance(reply, list) and reply else None
            if (got.decode() if isinstance(got, bytes) else got) != args[10]:
                wrong += 1

    await asyncio.gather(*(caller() for _ in range(concurrency)))
    return wrong


async def _measure(family: str, topology: str, url: str, warm: Sequence[tuple[list[str], list[str | bytes]]],
                   timed: Sequence[tuple[list[str], list[str | bytes]]], concurrency: int) -> dict[str, float]:
    async with open_client(family, topology, url) as invoke:
        wrong = await _drive(invoke, warm, concurrency)
        cpu0, t0 = time.process_time(), time.perf_counter()
        wrong += await _drive(invoke, timed, concurrency)
        took, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    if wrong:
        raise RuntimeError(f"{family} on {topology}: {wrong} replies did not carry their task id")
    return {"calls_per_s": len(timed) / took, "cpu_us_per_call": 1e6 * cpu / len(timed), "seconds": took}


# -- the servers ----------------------------------------------------------------------------------

class Target:
    """One topology's Redis: its URL, a sync client for checks, and its primaries (to flush)."""

    def __init__(self, topology: str, url: str) -> None:
        self.topology = topology
        self.url = url
        self.reader: redis.Redis | redis.cluster.RedisCluster
        if is_cluster(url):
            _, seeds = cluster_seeds(url)
            self.reader = redis.cluster.RedisCluster(host=seeds[0][0], port=seeds[0][1])
            self.primaries = [redis.Redis(n.host, n.port) for n in self.reader.get_primaries()]
        else:
            self.reader = redis.Redis.from_url(url)
            self.primaries = [self.reader]

    def flush(self) -> None:
        for conn in self.primaries:
            conn.flushall()

    def queued(self, queues: Sequence[str]) -> int:
        """Task ids in the queues' priority-0 ready lists."""
        return sum(int(self.reader.llen(f"cv:{{q:{queue}}}:r:0")) for queue in queues)

    def close(self) -> None:
        for conn in {id(c): c for c in (*self.primaries, self.reader)}.values():
            conn.close()


def _loop_runner() -> asyncio.Runner:
    try:
        import uvloop  # noqa: PLC0415
    except ImportError:
        return asyncio.Runner()
    return asyncio.Runner(loop_factory=uvloop.new_event_loop)


def run(single_url: str | None, cluster_url: str | None, calls: int, rounds: int,
        concurrency: int = CONCURRENCY, families: Sequence[str] = FAMILIES,
        log: Callable[[str], None] = print) -> dict[str, Any]:
    """Every client family on each given topology, `rounds` rounds of `calls` timed calls each."""
    warm_n = max(100, calls // 10)
    queues = queue_names(cluster_url)
    targets = [Target(t, u) for t, u in (("single", single_url), ("cluster", cluster_url)) if u]
    work = {t.topology: submit_calls(warm_n + calls, queues, sharded=t.topology == "cluster") for t in targets}
    skipped = {f: why for f in families if (why := missing(f))}
    runnable = [f for f in families if f not in skipped]
    samples: dict[tuple[str, str], list[dict[str, float]]] = {}
    errors: dict[str, str] = {}
    try:
        for r in range(rounds):
            order = runnable[r % len(runnable):] + runnable[:r % len(runnable)] if runnable else []
            for target in targets:
                for family in order:
                    name = f"{family} {target.topology}"
                    if name in errors:
                        continue
                    target.flush()
                    batch = work[target.topology]
                    try:
                        with _loop_runner() as runner:
                            got = runner.run(_measure(family, target.topology, target.url, batch[:warm_n],
                                                      batch[warm_n:], concurrency))
                        stored = target.queued(queues)
                        if stored != warm_n + calls:
                            raise RuntimeError(f"{stored} tasks stored, not {warm_n + calls}")
                    except Exception as exc:
                        log(traceback.format_exc())
                        errors[name] = f"{type(exc).__name__}: {exc}"[:300]
                        continue
                    samples.setdefault((family, target.topology), []).append(got)
                    log(f"  round {r + 1} {CLIENT_NAMES[family, target.topology]:28s} {target.topology:7s} "
                        f"{got['calls_per_s']:9,.0f} calls/s {got['cpu_us_per_call']:7.1f} µs CPU/call")
        for target in targets:
            target.flush()
    finally:
        for target in targets:
            target.close()
    clients: dict[str, dict[str, Any]] = {}
    for family in families:
        row: dict[str, Any] = {}
        for target in targets:
            got = samples.get((family, target.topology), [])
            if got:
                row[target.topology] = {
                    "client": CLIENT_NAMES[family, target.topology],
                    "calls_per_s": statistics.median(s["calls_per_s"] for s in got),
                    "cpu_us_per_call": statistics.median(s["cpu_us_per_call"] for s in got),
                    "rounds": [{k: round(v, 2) for k, v in s.items()} for s in got]}
            elif f"{family} {target.topology}" in errors:
                row[target.topology] = {"client": CLIENT_NAMES[family, target.topology],
                                        "error": errors[f"{family} {target.topology}"]}
        if family in skipped:
            row["skipped"] = skipped[family]
        clients[family] = row
    return {"script": "submit.lua", "calls": calls, "warmup": warm_n, "rounds": rounds, "concurrency": concurrency,
            "queues": queues, "versions": versions(), "clients": clients,
            "tasks": sum(len(v) for v in samples.values()) * (warm_n + calls),
            "errors": errors}


def table(res: dict[str, Any]) -> list[str]:
    """The printed table: one row per client family, calls/s and CPU µs per call on each topology."""
    lines = [f"Redis clients: EVALSHA submit.lua (one task), {res['concurrency']} concurrent callers in one process, "
             f"{res['calls']:,} calls after {res['warmup']:,} untimed; median of {res['rounds']} rounds",
             f"  {'client':14s} {'single calls/s':>14s} {'µs CPU/call':>11s}  {'cluster calls/s':>15s} "
             f"{'µs CPU/call':>11s}   classes"]
    for family, row in res["clients"].items():
        if "skipped" in row:
            lines.append(f"  {family:14s} skipped: {row['skipped']}")
            continue
        cells = []
        for topology, width in (("single", 14), ("cluster", 15)):
            got = row.get(topology, {})
            if "calls_per_s" in got:
                cells.append(f"{got['calls_per_s']:{width},.0f} {got['cpu_us_per_call']:11.1f}")
            else:
                cells.append(f"{'error' if 'error' in got else '-':>{width}s} {'':11s}")
        names = " / ".join(row[t]["client"] for t in ("single", "cluster") if t in row)
        lines.append(f"  {family:14s} {cells[0]}  {cells[1]}   {names}")
    for name, error in res.get("errors", {}).items():
        lines.append(f"  error: {name}: {error}")
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.redis_clients_micro", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calls", type=int, default=20_000, help="timed calls per client and topology (20,000)")
    ap.add_argument("--rounds", type=int, default=3, help="rounds; the median is reported (3)")
    ap.add_argument("--concurrency", type=int, default=CONCURRENCY, help="concurrent callers (64)")
    ap.add_argument("--clients", default=",".join(FAMILIES), help="comma-separated client families")
    ap.add_argument("--redis-url", default=None, help="a redis:// server to use (default: start one)")
    ap.add_argument("--cluster-url", default=None, help="a redis+cluster:// cluster to use (default: start one)")
    ap.add_argument("--single-only", action="store_true", help="no cluster")
    ap.add_argument("--json", type=Path, default=None, help="write the results here too")
    args = ap.parse_args(argv)
    families = [f for f in FAMILIES if f in args.clients.split(",")]
    with tempfile.TemporaryDirectory(prefix="conveyor-clients-micro-") as tmp, contextlib.ExitStack() as stack:
        single_url, cluster_url = args.redis_url, args.cluster_url
        if single_url is None:
            from bench.common import private_redis  # noqa: PLC0415

            server, client = private_redis(Path(tmp), "redis")
            stack.callback(server.stop)
            stack.callback(client.close)
            single_url = f"redis://127.0.0.1:{server.port}/0"
        if cluster_url is None and not args.single_only:
            from tests.redis_cluster import RedisClusterServers  # noqa: PLC0415

            cluster = RedisClusterServers(Path(tmp) / "cluster").start()
            stack.callback(cluster.stop)
            cluster_url = cluster.url
        res = run(single_url, cluster_url, args.calls, args.rounds, args.concurrency, families)
    print("\n".join(table(res)))
    if args.json:
        args.json.write_text(json.dumps(res, indent=2) + "\n")
    return 1 if res["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
