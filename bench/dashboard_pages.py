"""The dashboard scenario's measurements (issue 16): each page's server time with a deep queue
behind it, and what 50 open overview streams cost the dashboard process.

Pages are timed from this process with httpx2 over loopback (request sent to last byte read),
one request at a time after a warm-up, so a page's p95 is its own. The streams are
`/events/overview` server-sent event streams held open by httpx2 in one asyncio loop here;
the dashboard's CPU is read from /proc over the same seconds, first without streams.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx2 as httpx

from bench.measure import CpuMeter, percentile
from conveyor import Client
from tests.browser.dashboard_process import Dashboard, start_dashboard

WARMUP = 3
LIST_PAGE = 50
"""Tasks per page of the dashboard's tasks list."""


def pages(deep_queue: str, task_id: str) -> dict[str, str]:
    """The pages timed, by the name their figures carry: every page of the dashboard, the
    tasks list both unfiltered and filtered on the deep queue, a task's page inside it."""
    return {"overview": "/", "queues": "/queues", "tasks": "/tasks",
            "tasks_deep_queued": f"/tasks?queue={deep_queue}&state=QUEUED", "task": f"/tasks/{task_id}",
            "dead": f"/dead?queue={deep_queue}", "workers": "/workers", "schedules": "/schedules"}


def time_pages(base_url: str, paths: dict[str, str], requests: int) -> dict[str, dict[str, float]]:
    """p50, p95 and max milliseconds of `requests` sequential GETs per page; any status but 200 fails."""
    out: dict[str, dict[str, float]] = {}
    with httpx.Client(base_url=base_url, timeout=30) as http:
        for name, path in paths.items():
            samples = []
            for i in range(WARMUP + requests):
                t0 = time.perf_counter()
                response = http.get(path)
                response.read()
                took = time.perf_counter() - t0
                if response.status_code != 200:
                    raise RuntimeError(f"GET {path}: {response.status_code} {response.text[:300]}")
                if i >= WARMUP:
                    samples.append(took * 1000)
            out[name] = {"p50_ms": percentile(samples, 50), "p95_ms": percentile(samples, 95), "max_ms": max(samples)}
    return out


def time_list_tasks(target: str, deep_queue: str, requests: int) -> dict[str, float]:
    """p95 ms of the ListTasks calls behind the two tasks pages (50 a page, as the dashboard
    asks), straight through the SDK: the scheduler's part of those pages' time."""
    out: dict[str, float] = {}
    with Client(target) as client:
        for name, queue, states in (("tasks", None, ()), ("tasks_deep_queued", deep_queue, ("QUEUED",))):
            samples = []
            for i in range(WARMUP + requests):
                t0 = time.perf_counter()
                client.admin.list_tasks(queue, states=states, page_size=LIST_PAGE)
                if i >= WARMUP:
                    samples.append((time.perf_counter() - t0) * 1000)
            out[f"rpc_p95_ms_{name}"] = percentile(samples, 95)
    return out


async def _hold_streams(base_url: str, count: int, seconds: float, pid: int) -> tuple[float, int, int]:
    """Opens `count` overview streams, waits for each one's first event, then meters the
    dashboard's CPU for `seconds` while they stay open. Returns (CPU %, events read, streams open)."""
    events = [0] * count
    opened = [asyncio.Event() for _ in range(count)]
    limits = httpx.Limits(max_connections=count + 5, max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=base_url, timeout=httpx.Timeout(10, read=None), limits=limits) as http:
        async def follow(i: int) -> None:
            async with http.stream("GET", "/events/overview") as response:
                if response.status_code != 200:
                    raise RuntimeError(f"/events/overview: {response.status_code}")
                async for line in response.aiter_lines():
                    if line.startswith("data:"):
                        events[i] += 1
                        opened[i].set()

        readers = [asyncio.create_task(follow(i)) for i in range(count)]
        waiting: asyncio.Future[Any] = asyncio.ensure_future(asyncio.gather(*(e.wait() for e in opened)))
        first: list[asyncio.Future[Any]] = [waiting, *readers]
        try:
            await asyncio.wait(first, timeout=30, return_when=asyncio.FIRST_COMPLETED)
            failed = [r for r in readers if r.done()]
            if failed:
                failed[0].result()  # raises the stream's error
                raise RuntimeError("an overview stream ended before the measurement")
            if not all(e.is_set() for e in opened):
                raise RuntimeError("not every overview stream sent an event within 30 s")
            before = sum(events)
            meter = CpuMeter({"dashboard": pid}).start()
            await asyncio.sleep(seconds)  # the measured stretch: the streams stay open meanwhile
            cpu = meter.stop()["dashboard"]
            alive = sum(1 for r in readers if not r.done())
            return 100.0 * cpu / seconds, sum(events) - before, alive
        finally:
            waiting.cancel()
            for r in readers:
                r.cancel()
            await asyncio.gather(*readers, return_exceptions=True)


def idle_cpu_percent(pid: int, seconds: float) -> float:
    meter = CpuMeter({"dashboard": pid}).start()
    time.sleep(seconds)  # the measured stretch: nobody is connected
    return 100.0 * meter.stop()["dashboard"] / seconds


def measure(target: str, work_dir: Path, deep_queue: str, task_id: str, requests: int, streams: int,
            seconds: float) -> tuple[Dashboard, dict[str, Any]]:
    """Starts a dashboard on `target` and measures it; the caller stops the returned process."""
    dashboard = start_dashboard(work_dir, target, name="dashboard")
    try:
        timed = time_pages(dashboard.url, pages(deep_queue, task_id), requests)
        rpc = time_list_tasks(target, deep_queue, requests)
        pid = dashboard.proc.popen.pid
        idle = idle_cpu_percent(pid, seconds)
        cpu, events, alive = asyncio.run(_hold_streams(dashboard.url, streams, seconds, pid))
    except BaseException:
        dashboard.proc.kill()
        raise
    flat = {f"p95_ms_{name}": t["p95_ms"] for name, t in timed.items()}
    worst = max(timed, key=lambda name: timed[name]["p95_ms"])
    return dashboard, {**flat, **rpc, "page_p95_max_ms": timed[worst]["p95_ms"], "slowest_page": worst, "pages": timed,
                       "requests_per_page": requests, "sse_streams": alive, "sse_seconds": seconds,
                       "sse_events": events, "sse_cpu_pct": cpu, "idle_cpu_pct": idle}
