"""`conveyor-worker APP_MODULE:app --queues a,b --concurrency N`, or in Celery's spelling
`conveyor-worker -A MODULE -Q a,b -c N -P processes --loglevel INFO`."""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import signal
from pathlib import Path

import click
from click.core import ParameterSource

from conveyor import event_loop
from conveyor.app import POOLS
from conveyor.channels import ChannelSecurity, TLSConfig
from conveyor.cli_security import security_options, tls_config
from conveyor.errors import ChannelConfigError
from conveyor.telemetry import configure_from_env
from conveyor_worker.config import LOG_FORMAT, LOG_LEVEL_ENV, PoolOptions, WorkerConfig, default_worker_id
from conveyor_worker.loader import app_scheduler, load_app
from conveyor_worker.schedules import apply_schedules
from conveyor_worker.thread_runner import busy_threads
from conveyor_worker.worker import Worker

P = "CONVEYOR_WORKER_"
CELERY_POOLS = {"prefork": "processes", "solo": "threads"}
"""Celery's pool names that map: prefork is the process pool; solo is one thread (-c 1)."""
GREEN_POOLS = ("eventlet", "gevent")


def _csv(value: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in value.split(",") if v.strip())


def _pools(ctx: click.Context, param: click.Parameter, value: str) -> tuple[str, ...]:
    names = _csv(value)
    green = [p for p in names if p in GREEN_POOLS]
    if green:
        raise click.BadParameter(f"{green[0]!r}: there is no green-thread pool; async def handlers run on the "
                                 "worker's event loop, and I/O-bound plain functions run well in --pool threads with "
                                 "a high -c")
    if "solo" in names:
        if len(names) > 1:
            raise click.BadParameter(f"{value!r}: solo is a pool of its own")
        ctx.meta["conveyor_solo"] = True
    pools = tuple(CELERY_POOLS.get(p, p) for p in names)
    unknown = [p for p in pools if p not in POOLS]
    if unknown or not pools or len(set(pools)) != len(pools):
        raise click.BadParameter(f"{value!r}: give threads, processes, or both comma-separated (Celery's prefork "
                                 "is processes, solo one thread)")
    return pools


def _autoscale(ctx: click.Context, param: click.Parameter, value: str) -> tuple[int, int] | None:
    if not value:
        return None
    try:
        maximum, minimum = (int(v) for v in value.split(","))
    except ValueError:
        raise click.BadParameter(f"{value!r}: give MAX,MIN, two whole numbers") from None
    if not 1 <= minimum <= maximum <= 10_000:
        raise click.BadParameter(f"{value!r}: MAX,MIN needs 1 <= MIN <= MAX <= 10000")
    return maximum, minimum


async def _main(worker: Worker) -> None:
    loop = asyncio.get_running_loop()
    shutdown: asyncio.Task[None] | None = None

    def on_signal() -> None:
        nonlocal shutdown
        if shutdown is None:
            shutdown = asyncio.create_task(worker.shutdown())
        else:  # a second signal: stop now, the scheduler hands the leases back
            worker.stopped.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)
    runner = asyncio.create_task(worker.run())
    config = worker.config
    applier = asyncio.create_task(apply_schedules(worker.app, config.targets, tls=config.tls,  # @app.periodic
                                                  token=config.token))
    await worker.stopped.wait()
    applier.cancel()
    if shutdown:
        await asyncio.gather(shutdown, return_exceptions=True)
    runner.cancel()
    await asyncio.gather(runner, return_exceptions=True)


def _check_security(targets: tuple[str, ...], tls: TLSConfig | None, token: str | None) -> None:
    """Refuses at start-up what every stream would refuse later: a plaintext token to a remote
    scheduler, unreadable TLS files."""
    try:
        for target in targets:
            security = ChannelSecurity.resolve(target, tls, token)
            if security.tls is not None:
                security.tls.credentials()
    except ChannelConfigError as exc:
        raise click.ClickException(str(exc)) from None


def _given_security(ctx: click.Context, tls: TLSConfig | None, token: str | None
                    ) -> tuple[TLSConfig | None, str | None]:
    """The TLS and token the command line gave (None for what it did not: the app's clients then
    read CONVEYOR_TLS_* and CONVEYOR_TOKEN themselves, unless the app set its own in code, which
    the environment does not override; a flag does)."""
    def given(*names: str) -> bool:
        return any(ctx.get_parameter_source(n) is ParameterSource.COMMANDLINE for n in names)

    return (tls if given("tls_ca", "tls_cert", "tls_key") else None,
            token if given("token") else None)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("app_ref", metavar="APP_MODULE:app", envvar=P + "APP", required=False)
@click.option("-A", "--app", "app_option", default="", metavar="MODULE[:ATTR]",
              help="The app, as Celery's -A: MODULE:ATTR, or a MODULE holding one (its app, its celery, its only "
                   "app, or its celery submodule); a conveyor App or a conveyor.celery Celery.")
@click.option("--queues", "-Q", default="", envvar=P + "QUEUES",
              help="Comma-separated queues (default: the app's task queues plus 'default'; for a Celery app, its "
                   "task_default_queue, as Celery's worker).")
@click.option("--concurrency", "-c", default=8, show_default=True, type=click.IntRange(1, 10_000),
              envvar=P + "CONCURRENCY", help="Tasks run at once.")
@click.option("--prefetch", default=0, show_default=True, type=click.IntRange(0, 10_000), envvar=P + "PREFETCH",
              help="Extra leases held while all slots are busy (worth it for short tasks; 0 for long ones).")
@click.option("--scheduler", "-s", default="127.0.0.1:50051", show_default=True, envvar="CONVEYOR_SCHEDULER",
              help="Scheduler address, or several comma-separated for failover.")
@click.option("--worker-id", default="", envvar=P + "ID", help="Unique id (default: host-pid-random).")
@click.option("--grace-period", default=30.0, show_default=True, type=float, envvar=P + "GRACE_PERIOD",
              help="Seconds to finish in-flight tasks after SIGTERM.")
@click.option("--pool", "-P", "pools", default="threads", show_default=True, envvar=P + "POOL", callback=_pools,
              help="Where plain functions run: threads, processes, or both comma-separated (the first runs "
                   "tasks that name no pool); async def handlers always run on the event loop. Celery's names: "
                   "prefork (processes), solo (threads, -c 1).")
@click.option("--start-method", default="", envvar=P + "START_METHOD",
              type=click.Choice(["", *multiprocessing.get_all_start_methods()]),
              help="How the process pool starts children (default: forkserver where available).")
@click.option("--max-tasks-per-child", default=0, type=click.IntRange(0), envvar=P + "MAX_TASKS_PER_CHILD",
              help="Replace a child process after this many tasks (0: never).")
@click.option("--max-memory-per-child", default=0, type=click.IntRange(0), envvar=P + "MAX_MEMORY_PER_CHILD",
              metavar="MIB", help="Replace a child process once its task ends above this resident memory (0: never).")
@click.option("--autoscale", default="", envvar=P + "AUTOSCALE", metavar="MAX,MIN", callback=_autoscale,
              help="Process pool: grow children toward MAX while tasks wait, shrink toward MIN when idle.")
@click.option("--autoscale-keepalive", default=30.0, show_default=True, type=click.FloatRange(0),
              envvar=P + "AUTOSCALE_KEEPALIVE", help="Seconds without a backlog before autoscale shrinks.")
@click.option("--log-level", "--loglevel", "-l", "log_level", default="INFO", show_default=True,
              envvar=P + "LOG_LEVEL", help="DEBUG, INFO, WARNING, ERROR (any case); also the pool's children's.")
@security_options
@event_loop.option(envvar=P + "LOOP")
def main(app_ref: str | None, app_option: str, queues: str, concurrency: int, prefetch: int, scheduler: str,
         worker_id: str, grace_period: float, pools: tuple[str, ...], start_method: str, max_tasks_per_child: int,
         max_memory_per_child: int, autoscale: tuple[int, int] | None, autoscale_keepalive: float, log_level: str,
         token: str | None, tls_ca: Path | None, tls_cert: Path | None, tls_key: Path | None, loop: str) -> None:
    """Run tasks of APP_MODULE:app (or -A MODULE) from a Conveyor scheduler."""
    if app_ref and app_option and app_ref != app_option:
        raise click.UsageError(f"two apps given: {app_ref!r} and -A {app_option!r}")
    app_ref = app_option or app_ref
    if not app_ref:
        raise click.UsageError("give the app: conveyor-worker MODULE:app, or -A MODULE")
    ctx = click.get_current_context()
    if ctx.meta.get("conveyor_solo"):
        if concurrency != 1 and ctx.get_parameter_source("concurrency") is not ParameterSource.DEFAULT:
            raise click.BadParameter("solo runs one task at a time: leave -c out (or give 1)", param_hint="-P")
        concurrency = 1
    if autoscale is not None:
        if "processes" not in pools:
            raise click.BadParameter("needs --pool processes", param_hint="--autoscale")
        concurrency = autoscale[1]  # the slots follow the live children, from MIN
    if concurrency + prefetch > 10_000 or (autoscale and autoscale[0] + prefetch > 10_000):
        raise click.UsageError("--concurrency (or --autoscale's MAX) plus --prefetch must be at most 10000")
    logging.basicConfig(level=log_level.upper(), format=LOG_FORMAT)
    os.environ[LOG_LEVEL_ENV] = log_level.upper()  # the process pool's children log at the same level
    telemetry = configure_from_env("conveyor-worker")  # exports traces/metrics only when OTEL_* says so
    app = load_app(app_ref)
    if ctx.get_parameter_source("scheduler") is ParameterSource.DEFAULT:
        scheduler = app_scheduler(app) or scheduler  # a Celery app's broker URL, as a Celery worker uses it
    targets, tls = _csv(scheduler), tls_config(tls_ca, tls_cert, tls_key)
    _check_security(targets, tls, token)
    app_tls, app_token = _given_security(ctx, tls, token)
    app.set_security(tls=app_tls, token=app_token)  # tasks that submit tasks connect as the worker does
    names = _csv(queues) or tuple(sorted(app.default_queues()))
    process_pool = PoolOptions(app_ref, start_method, max_tasks_per_child, max_memory_per_child, autoscale,
                               autoscale_keepalive, app_tls, app_token) if "processes" in pools else None
    config = WorkerConfig(targets=targets, queues=names, concurrency=concurrency, prefetch=prefetch,
                          worker_id=worker_id or default_worker_id(), grace_period=grace_period, pools=pools,
                          process_pool=process_pool, tls=tls, token=token)
    logging.info("worker %s: %d tasks, queues %s, concurrency %d, prefetch %d, pools %s", config.worker_id,
                 len(app.tasks), ",".join(names), concurrency, prefetch, ",".join(pools))
    event_loop.run(_main(Worker(app, config)), loop)
    stuck = busy_threads()
    if stuck:  # handlers that outlived their time limit or the grace period: do not wait for them
        logging.warning("abandoning %d handler threads that are still running", stuck)
        telemetry.force_flush(5_000)  # os._exit skips the exporters' own flush at exit
        logging.shutdown()
        os._exit(0)


if __name__ == "__main__":
    main()
