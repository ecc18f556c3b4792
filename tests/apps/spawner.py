"""Tasks that submit tasks through the app's own clients (`app.client`, `app.aclient`), from each
place a handler runs: the thread pool, the event loop and a process-pool child. The app names
its scheduler from SPAWNER_SCHEDULER and nothing else: TLS and the token come from the worker."""

from __future__ import annotations

import os

from conveyor import App

app = App("spawner", scheduler=os.environ.get("SPAWNER_SCHEDULER", "127.0.0.1:50051"))


@app.task(name="spawn.double")
def double(x: int) -> int:
    return 2 * x


@app.task(name="spawn.parent")
def parent(x: int) -> int:
    return double.submit(x).result(timeout=30) + 1


@app.task(name="spawn.parent_in_child", pool="processes")
def parent_in_child(x: int) -> int:
    return double.submit(x).result(timeout=30) + 1


@app.task(name="spawn.aparent")
async def aparent(x: int) -> int:
    handle = await double.asubmit(x)
    return await handle.result(timeout=30) + 1  # type: ignore[no-any-return]
