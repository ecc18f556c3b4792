"""The asyncio event loop the scheduler and the worker run on.

uvloop (libuv) runs their callbacks, sockets and timers with less Python per event than
asyncio's own loop: on the benchmark's batch scenario about 12% more tasks/s and a shorter
round trip. It is the default where it is installed (the services depend on it except on
Windows); `asyncio` picks the standard loop.

`run` also sets the collector for a long-lived service (`tune_gc`).
"""

from __future__ import annotations

import asyncio
import gc
import importlib.util
import logging
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import click

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])
CHOICES = ("auto", "uvloop", "asyncio")

log = logging.getLogger(__name__)


def resolve(choice: str) -> str:
    """The loop `choice` means here: "auto" is uvloop when it is installed, else asyncio."""
    if choice not in CHOICES:
        raise ValueError(f"event loop must be one of {', '.join(CHOICES)}, not {choice!r}")
    if choice == "auto":
        return "uvloop" if importlib.util.find_spec("uvloop") is not None else "asyncio"
    if choice == "uvloop" and importlib.util.find_spec("uvloop") is None:
        raise ValueError("uvloop is not installed (pip install uvloop), or pick the asyncio loop")
    return choice


GC_THRESHOLD = (50_000, 50, 100)
"""Python's default is (700, 10, 10): a collection every 700 net new container objects."""


def tune_gc() -> None:
    """Moves what start-up made out of the collector's view (gc.freeze) and lets the young
    generation grow to GC_THRESHOLD before a collection. A service allocates and frees
    protobuf wrappers, dicts and tuples per task, nearly all short-lived and free of cycles, so
    the default threshold collected about 820 times (and 6 full collections over the whole
    heap) per 100,000 batched tasks in the scheduler: 0.225 s of its 4.13 s of CPU (5.4%),
    measured with gc.callbacks on `make bench`'s batch scenario. Tuned: 0.020 s (one
    collection). Cyclic garbage still triggers a collection once 50,000 objects of it pile up."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLD)


def run(main: Coroutine[Any, Any, T], choice: str = "auto") -> T:
    """asyncio.run(main) on the loop `choice` resolves to, with the collector tuned (tune_gc)."""
    loop = resolve(choice)
    tune_gc()
    log.info("event loop: %s", loop)
    if loop == "uvloop":
        import uvloop  # noqa: PLC0415 - optional: only where it is installed

        return uvloop.run(main)
    return asyncio.run(main)


def option(envvar: str) -> Callable[[F], F]:
    """The services' `--loop` option. The command gets the loop resolved; a choice this
    machine cannot honour (uvloop not installed) is a usage error naming the flag."""

    def resolved(ctx: click.Context, param: click.Parameter, value: str) -> str:
        try:
            return resolve(value)
        except ValueError as exc:
            raise click.BadParameter(str(exc), ctx=ctx, param=param) from None

    return click.option("--loop", "loop", type=click.Choice(CHOICES), default="auto", show_default=True,
                        envvar=envvar, callback=resolved,
                        help="Event loop: uvloop when installed (auto), or asyncio's own.")
