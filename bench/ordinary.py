"""The ordinary path (issue 17): a web application's calls, one at a time, timed alike for both systems.

A request submits one task and sometimes reads one result; nothing is batched. Both runners
time the same sequence here, with their system's ordinary API behind a `Producer`: every
submit, one call each, then every result, one call each, in order. `run_producers` runs that
sequence in several producer processes at once (spawned, released together behind a barrier).
"""

from __future__ import annotations

import multiprocessing
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from bench.measure import CpuMeter, percentile


class Producer(Protocol):
    """One system's ordinary calls for `add(i, i)`."""

    def submit(self, i: int) -> Any: ...
    def result(self, handle: Any) -> Any: ...
    def close(self) -> None: ...


@dataclass
class Sequential:
    """Submits one at a time, then results one at a time: each call's seconds, and when the run
    started, finished submitting and had every result (time.monotonic: the same in every process)."""

    numbers: list[int]
    values: list[Any]
    submit_s: list[float]
    result_s: list[float]
    started: float
    submitted: float
    finished: float

    @property
    def verified(self) -> int:
        """How many values are exactly add(i, i)."""
        return sum(1 for i, v in zip(self.numbers, self.values, strict=True) if v == 2 * i)

    @classmethod
    def merged(cls, runs: Sequence[Sequential]) -> Sequential:
        """Several producers' runs as one: from the first submit of any to the last result of all."""
        return cls([i for r in runs for i in r.numbers], [v for r in runs for v in r.values],
                   [s for r in runs for s in r.submit_s], [s for r in runs for s in r.result_s],
                   min(r.started for r in runs), max(r.submitted for r in runs), max(r.finished for r in runs))

    def fields(self, prefix: str = "") -> dict[str, float]:
        """End-to-end tasks/s, the submit phase's tasks/s, and p50/p99 ms of each kind of call."""
        n = len(self.numbers)
        return {f"{prefix}throughput": n / (self.finished - self.started),
                f"{prefix}submit_phase_rate": n / (self.submitted - self.started),
                **_ms(self.submit_s, f"{prefix}submit"), **_ms(self.result_s, f"{prefix}result")}


def _ms(seconds: Sequence[float], name: str) -> dict[str, float]:
    return {f"{name}_p50_ms": 1000 * percentile(seconds, 50), f"{name}_p99_ms": 1000 * percentile(seconds, 99)}


def _timed_each(call: Callable[[Any], Any], items: Sequence[Any]) -> tuple[list[Any], list[float]]:
    out: list[Any] = []
    took: list[float] = []
    for item in items:
        t0 = time.perf_counter()
        out.append(call(item))
        took.append(time.perf_counter() - t0)
    return out, took


def one_at_a_time(submit: Callable[[int], Any], result: Callable[[Any], Any], numbers: Sequence[int]) -> Sequential:
    """submit(i) for each number, one call at a time; then result(handle) for each, in order."""
    started = time.monotonic()
    handles, submit_s = _timed_each(submit, numbers)
    submitted = time.monotonic()
    values, result_s = _timed_each(result, handles)
    return Sequential(list(numbers), values, submit_s, result_s, started, submitted, time.monotonic())


def warm_up(producer: Producer, count: int) -> None:
    """Untimed round trips first: the producer's connections open and its code paths warm."""
    run = one_at_a_time(producer.submit, producer.result, range(count))
    if run.verified != count:
        raise RuntimeError(f"producer warm-up: {count - run.verified} of {count} results were wrong")


# -- several producer processes --------------------------------------------------------------

def run_producers(make: Callable[[], Producer], count: int, per: int, meter: Callable[[list[int]], CpuMeter],
                  warmup: int, timeout: float) -> tuple[Sequential, dict[str, float]]:
    """`count` spawned processes, each with its own producer from `make` (picklable), run
    one_at_a_time on `per` numbers of their own, all released together once every one is
    connected and warmed up. `meter(pids)` is started just before the release and stopped
    when the last result is in, while the producers still live (their CPU is read from /proc).
    Returns the merged run and the meter's CPU seconds."""
    mp = multiprocessing.get_context("spawn")
    messages = mp.Queue()
    go = mp.Barrier(count + 1)
    leave = mp.Event()
    procs = [mp.Process(target=_producer_process, daemon=True, name=f"producer-{k}",
                        args=(make, range(k * per, (k + 1) * per), warmup, messages, go, leave))
             for k in range(count)]
    for proc in procs:
        proc.start()
    try:
        _receive(messages, "ready", count, timeout)
        cpu = meter([proc.pid for proc in procs if proc.pid is not None])
        go.wait(timeout)
        runs: list[Sequential] = _receive(messages, "done", count, timeout)
        used = cpu.stop()
    finally:
        go.abort()  # frees producers still at the barrier when one failed
        leave.set()
        for proc in procs:
            proc.join(30)
            if proc.is_alive():
                proc.kill()
                proc.join(10)
    return Sequential.merged(sorted(runs, key=lambda r: r.numbers[0])), used


def _receive(messages: Any, kind: str, count: int, timeout: float) -> list[Any]:
    """`count` messages of `kind` from the producers; a producer's error is raised here."""
    got: list[Any] = []
    while len(got) < count:
        what, body = messages.get(timeout=timeout)
        if what == "error":
            raise RuntimeError(f"a producer process failed:\n{body}")
        assert what == kind, (what, kind)
        got.append(body)
    return got


def _producer_process(make: Callable[[], Producer], numbers: range, warmup: int, messages: Any, go: Any,
                      leave: Any) -> None:
    """One producer process: connect, warm up, say ready, wait for the others, run, report, and
    stay alive until the parent has read every producer's CPU."""
    producer = None
    try:
        producer = make()
        warm_up(producer, warmup)
        messages.put(("ready", None))
        go.wait()
        messages.put(("done", one_at_a_time(producer.submit, producer.result, numbers)))
    except Exception:
        messages.put(("error", traceback.format_exc()))
    leave.wait()
    if producer is not None:
        producer.close()
