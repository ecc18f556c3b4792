"""Example tasks for `conveyor dev` and `make run`; also a worked example of the SDK."""

from __future__ import annotations

import asyncio

from conveyor import App

app = App("demo")


@app.task(name="demo.add")
def add(x: int, y: int) -> int:
    """A plain function: runs in the worker's thread pool."""
    return x + y


@app.task(name="demo.word_count")
def word_count(text: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for word in text.lower().split():
        counts[word] = counts.get(word, 0) + 1
    return counts


@app.task(name="demo.slow_square")
async def slow_square(x: int, delay: float = 0.2) -> int:
    """An async handler: runs on the worker's event loop."""
    await asyncio.sleep(delay)
    return x * x


@app.task(name="demo.total")
def total(values: list[int]) -> int:
    """A chord's callback: gets its header's results, in order."""
    return sum(values)


@app.task(name="demo.fail")
def fail(message: str = "boom") -> None:
    raise ValueError(message)


def run_demo(target: str) -> None:
    """Submits a few example tasks and prints their results."""
    from conveyor import Client, TaskFailed, chord  # noqa: PLC0415

    with Client(target) as client:
        print("demo: submitting example tasks ...", flush=True)
        h_add = client.submit("demo.add", [2, 3])
        h_words = client.submit("demo.word_count", ["the quick brown fox jumps over the lazy dog"])
        squares = client.submit_many([slow_square.s(i) for i in range(5)])
        h_fail = client.submit("demo.fail", ["this task fails on purpose"])
        print(f"demo: demo.add(2, 3) = {h_add.result(timeout=30)}", flush=True)
        print(f"demo: demo.word_count(...) = {h_words.result(timeout=30)}", flush=True)
        print(f"demo: demo.slow_square(0..4) = {[h.result(timeout=30) for h in squares]}", flush=True)
        try:
            h_fail.result(timeout=30)
        except TaskFailed as exc:
            print(f"demo: demo.fail raised as expected -> {exc.error_type}: {exc.error_message}", flush=True)
        workflow = chord(add.s(i, i) for i in range(5))(total.s(), client=client)  # a workflow, Celery's words
        print(f"demo: chord(add(i, i) for i in 0..4)(total) = {workflow.result(timeout=30)} "
              f"(workflow {workflow.id}; see `conveyor workflow {workflow.id}`)", flush=True)
        print(f"demo: done; task {h_add.id} is {h_add.state.name}", flush=True)
