"""`conveyor`: the command line for producers and developers."""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import click

from conveyor.channels import SECURITY_ENV, open_channel
from conveyor.cli_common import call_args, client_of, emit_json
from conveyor.cli_dead import dead
from conveyor.cli_queues import queue, queues
from conveyor.cli_schedules import schedules
from conveyor.cli_security import security_options, tls_config
from conveyor.cli_task import task
from conveyor.cli_tasks import cancel, retry, tasks
from conveyor.cli_token import token
from conveyor.cli_top import top
from conveyor.cli_workers import worker, workers
from conveyor.cli_workflow import workflow
from conveyor.common import DEFAULT_TARGET, TaskState, outcome
from conveyor.errors import ConveyorError, RPCError, TaskError
from conveyor.options import SubmitOptions
from conveyor.telemetry import configure_from_env
from conveyor.v1.task_service_pb2 import GetResultResponse

EXIT_CODES = """\b
Exit codes:
  0  done
  1  a call to the scheduler failed: "error: STATUS: message" on stderr
     (STATUS is the gRPC status, e.g. NOT_FOUND, UNAVAILABLE); or, for
     `submit --wait` and `result`, the task failed (its error on stderr);
     or `workflow --watch` saw the workflow end FAILED or CANCELLED
  2  usage error (bad option or argument), or a queue the scheduler
     does not know (`queue`, `queues`, `tasks`, `retry`, `cancel`, `top`)
  3  `result`: the task has not finished yet

Listings take --json: one JSON document on stdout, for scripts."""


@click.group(context_settings={"help_option_names": ["-h", "--help"]}, epilog=EXIT_CODES)
@click.option("--scheduler", "-s", default=DEFAULT_TARGET, show_default=True, envvar="CONVEYOR_SCHEDULER",
              help="Scheduler address.")
@security_options
@click.pass_context
def main(ctx: click.Context, scheduler: str, token: str | None, tls_ca: Path | None, tls_cert: Path | None,
         tls_key: Path | None) -> None:
    """Conveyor: submit tasks, read results, follow workflows, run a development stack, and operate it.

    Operators: `queues`, `queue pause|resume|purge`, `tasks`, `retry`, `cancel`, `top`,
    `workers`, `worker ...`, `dead ...`, `schedules ...`."""
    ctx.obj = {"scheduler": scheduler, "tls": tls_config(tls_ca, tls_cert, tls_key), "token": token}
    configure_from_env("conveyor-cli")  # traces `conveyor submit` only when OTEL_* says so


main.add_command(schedules)
main.add_command(dead)
main.add_command(task)
main.add_command(workers)
main.add_command(worker)
main.add_command(queues)
main.add_command(queue)
main.add_command(tasks)
main.add_command(retry)
main.add_command(cancel)
main.add_command(top)
main.add_command(token)
main.add_command(workflow)


@main.command()
@click.argument("name")
@click.option("--args", "args_json", default="[]", help='Positional arguments as a JSON list, e.g. "[2, 3]".')
@click.option("--kwargs", "kwargs_json", default="{}", help="Keyword arguments as a JSON object.")
@click.option("--queue", "-q", default=None, help="Explicit queue (else routing decides).")
@click.option("--priority", "-p", type=int, default=None, help="0 (default) to 9, higher first.")
@click.option("--countdown", type=float, default=None, help="Run no sooner than this many seconds from now.")
@click.option("--timeout", type=float, default=None, help="Hard time limit of one attempt, in seconds.")
@click.option("--idempotency-key", default=None)
@click.option("--wait", is_flag=True, help="Wait for the result and print it.")
@click.pass_context
def submit(ctx: click.Context, name: str, args_json: str, kwargs_json: str, queue: str | None, priority: int | None,
           countdown: float | None, timeout: float | None, idempotency_key: str | None, wait: bool) -> None:
    """Submit task NAME."""
    args, kwargs = call_args(args_json, kwargs_json)
    opts = SubmitOptions(queue=queue, priority=priority, countdown=countdown, timeout=timeout,
                         idempotency_key=idempotency_key)
    with client_of(ctx) as client:
        handle = client.submit(name, args, kwargs, **{f: getattr(opts, f) for f in opts.__slots__})
        click.echo(handle.id)
        if wait:
            _print_outcome(client.wait(handle.id))


def _print_outcome(resp: GetResultResponse) -> None:
    """Prints a terminal task's value, or its error and exit 1."""
    try:
        emit_json(outcome(resp))
    except TaskError as exc:
        click.echo(str(exc), err=True)
        sys.exit(1)


@main.command()
@click.argument("task_id")
@click.option("--wait", "wait", type=float, default=None, help="Seconds to wait for the task to finish.")
@click.pass_context
def result(ctx: click.Context, task_id: str, wait: float | None) -> None:
    """Print the result of TASK_ID (exit 1 if it failed, 3 if it has not finished)."""
    with client_of(ctx) as client:
        resp = client.get_result(task_id, wait=wait)
        if not TaskState(resp.state).terminal:
            click.echo(f"task {task_id} is {TaskState(resp.state).name}", err=True)
            sys.exit(3)
        _print_outcome(resp)


@main.command()
@click.argument("task_id")
@click.option("--timeout", type=float, default=None, help="Stop watching after this many seconds.")
@click.pass_context
def watch(ctx: click.Context, task_id: str, timeout: float | None) -> None:
    """Show TASK_ID's state changes live until it finishes."""
    with client_of(ctx) as client:
        for event in client.watch(task_id, timeout):
            stamp = time.strftime("%H:%M:%S", time.localtime(event.at)) + f".{int(event.at % 1 * 1000):03d}"
            click.echo(f"{stamp}  {event.state.name:<10} attempt {event.attempt}")
            if event.state.terminal and event.task is not None and event.task.error.type:
                click.echo(f"          {event.task.error.type}: {event.task.error.message}")


@main.command()
@click.option("--app", "-A", "app_ref", default="conveyor.demo:app", show_default=True,
              help="The worker's app: MODULE:app, or a MODULE holding one (a conveyor.celery app too).")
@click.option("--port", default=50051, show_default=True, type=int)
@click.option("--concurrency", default=8, show_default=True, type=int)
@click.option("--data-dir", default=".conveyor", show_default=True, help="Embedded Redis data folder.")
@click.option("--demo", is_flag=True, help="Submit the example tasks and print their results once up.")
@click.option("--metrics-port", default=9464, show_default=True, type=click.IntRange(0, 65535),
              help="The scheduler's Prometheus /metrics port (0: off).")
@click.option("--dashboard-port", default=8080, show_default=True, type=click.IntRange(0, 65535),
              help="The web dashboard's port on 127.0.0.1, when conveyor-dashboard is installed (0: off).")
def dev(app_ref: str, port: int, concurrency: int, data_dir: str, demo: bool, metrics_port: int,
        dashboard_port: int) -> None:
    """Run a scheduler (embedded Redis) and a worker in one command, until Ctrl-C.

    The stack is plaintext on loopback: it ignores --token, --tls-* and their variables."""
    for module in ("conveyor_scheduler", "conveyor_worker"):
        if importlib.util.find_spec(module) is None:
            raise click.ClickException(f"{module} is not installed (pip install conveyor-scheduler conveyor-worker)")
    target = f"127.0.0.1:{port}"
    for name in SECURITY_ENV:  # for the demo's client here and the worker below
        os.environ.pop(name, None)
    env = {k: v for k, v in os.environ.items() if k != "CONVEYOR_REDIS_URL"}
    scheduler = [sys.executable, "-m", "conveyor_scheduler", "--port", str(port), "--data-dir", data_dir,
                 "--metrics-port", str(metrics_port)]
    procs = [subprocess.Popen(scheduler, env=env)]
    try:
        _wait_serving(target, procs[0])
        procs.append(subprocess.Popen([sys.executable, "-m", "conveyor_worker", app_ref, "--scheduler", target,
                                       "--concurrency", str(concurrency)], env=env))
        if demo:
            from conveyor.demo import run_demo  # noqa: PLC0415

            run_demo(target)
        if dashboard_port and importlib.util.find_spec("conveyor_dashboard") is not None:
            procs.append(subprocess.Popen([sys.executable, "-m", "conveyor_dashboard", "--scheduler", target,
                                           "--host", "127.0.0.1", "--port", str(dashboard_port)], env=env,
                                          stdout=subprocess.DEVNULL))
            _wait_listening(dashboard_port, procs[-1])
            click.echo(f"conveyor dev: dashboard on http://127.0.0.1:{dashboard_port}")
        metrics = f", metrics on http://127.0.0.1:{metrics_port}/metrics" if metrics_port else ""
        click.echo(f"conveyor dev: scheduler on {target}{metrics}, worker running {app_ref}; Ctrl-C to stop")
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        while all(p.poll() is None for p in procs):
            time.sleep(0.5)
        raise click.ClickException("a dev process exited; see its log above")
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                p.terminate()
        for p in reversed(procs):
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()


def _wait_listening(port: int, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    """Waits until the dashboard accepts connections (it says so only on its own stdout)."""
    import socket  # noqa: PLC0415

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise click.ClickException(f"the dashboard did not listen on 127.0.0.1:{port} (see its log above)")


def _wait_serving(target: str, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    import grpc  # noqa: PLC0415
    from grpc_health.v1 import health_pb2, health_pb2_grpc  # noqa: PLC0415

    deadline = time.monotonic() + timeout
    with open_channel(target, env={}) as channel:  # the dev stack's own plaintext scheduler
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise click.ClickException("the scheduler exited during start-up")
            try:
                if stub.Check(health_pb2.HealthCheckRequest(), timeout=1).status == 1:
                    return
            except grpc.RpcError:
                time.sleep(0.1)
    raise click.ClickException(f"the scheduler did not serve on {target} within {timeout}s")


def run() -> None:
    """The `conveyor` entry point: a failed call exits 1 with its status (see EXIT_CODES)."""
    try:
        main()
    except RPCError as exc:
        click.echo(f"error: {exc.code.name}: {exc}", err=True)
        sys.exit(1)
    except ConveyorError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)


if __name__ == "__main__":
    run()
