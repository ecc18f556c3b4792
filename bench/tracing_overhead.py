#!/usr/bin/env python
"""What tracing costs on the hot path: submit + complete throughput in three set-ups.

    .venv/bin/python bench/tracing_overhead.py                  # 3 rounds, all modes, ~2 minutes
    .venv/bin/python bench/tracing_overhead.py --rounds 5 --single 3000 --batch 30000

Modes (each round runs them in turn, each with a fresh scheduler and worker process):
  off   the telemetry hooks stubbed out: OpenTelemetry is never consulted (an uninstrumented build)
  api   the default: the OpenTelemetry API installed, no OTEL_* exporter configured
  otlp  100% sampling; producer, scheduler and worker export traces (and metrics, every 60 s)
        over OTLP/gRPC to a receiver in this process, with the SDK's default batching

First, "per-task hook cost" times the telemetry hooks themselves in this process (no I/O, so
no noise from other load): what one task pays in the producer, the scheduler's dispatch and
the worker, with nothing configured (api) and with an SDK tracer recording everything (sdk,
spans batched to an exporter that drops them, so export itself is not included).

Workloads: "single" submits tasks one Submit call at a time from one thread (one producer
span each); "batch" submits them with submit_many in batches. A task counts as complete when
the scheduler publishes its end (the Redis done channel), so no result calls are timed. The
worker runs tests.apps.basic's t.add. Everything shares this machine's cores, the receiver
included, so "otlp" also pays for receiving; the figures are medians over the rounds.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from conveyor_scheduler.task_events import TaskEventHooks

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

MODES = {
    "off": "hooks stubbed out (OpenTelemetry never consulted)",
    "api": "API installed, no exporter configured (default)",
    "otlp": "100% sampling, OTLP/gRPC export to a local receiver",
}
DONE_CHANNEL = "cv:done"


# -- the processes -------------------------------------------------------------------------------

def _stub_out_telemetry() -> None:
    """Replaces every Conveyor telemetry hook with the cheapest stand-in ("tracing off")."""
    import conveyor.aio  # noqa: PLC0415
    import conveyor.client  # noqa: PLC0415
    from conveyor import telemetry  # noqa: PLC0415

    def producer_spans(request: object) -> object:
        return telemetry.NOT_TRACING

    conveyor.client.producer_spans = producer_spans  # type: ignore[assignment]
    conveyor.aio.producer_spans = producer_spans  # type: ignore[assignment]
    telemetry.configure_from_env = lambda service_name: telemetry.Telemetry()  # type: ignore[assignment]
    try:
        import conveyor_scheduler.telemetry as st  # noqa: PLC0415
        st.setup = lambda hooks, view, endpoint=None: None  # type: ignore[assignment]  # no task-event hook
    except ImportError:
        pass
    try:
        import conveyor_worker.telemetry as wt  # noqa: PLC0415

        wt.enabled = lambda: False  # type: ignore[assignment]
    except ImportError:
        pass


def _serve(role: str, mode: str, argv: list[str]) -> None:
    if mode == "off":
        _stub_out_telemetry()
    if role == "scheduler":
        from conveyor_scheduler.cli import main  # noqa: PLC0415
    else:
        from conveyor_worker.cli import main  # type: ignore[assignment] # noqa: PLC0415
    main(args=argv)


def _produce(mode: str, target: str, redis_url: str, single: int, batch: int, batch_size: int) -> None:
    """Runs the workloads against `target` and prints {"single": tasks/s, "batch": tasks/s}."""
    import redis  # noqa: PLC0415

    if mode == "off":
        _stub_out_telemetry()
    from conveyor import Call, Client, SubmitOptions  # noqa: PLC0415
    from conveyor.telemetry import configure_from_env  # noqa: PLC0415

    telemetry = configure_from_env("conveyor-bench-producer")
    assert telemetry.tracing == (mode == "otlp"), (mode, telemetry)
    done = _DoneCounter(redis.Redis.from_url(redis_url))
    out = {}
    with Client(target) as client:
        for name, count in (("warmup", 300), ("single", single), ("batch", batch)):
            done.expect(count)
            start = time.perf_counter()
            if name == "batch":
                for first in range(0, count, batch_size):
                    client.submit_many([Call("t.add", [i, 1], {}, SubmitOptions())
                                        for i in range(first, min(first + batch_size, count))])
            else:
                for i in range(count):
                    client.submit("t.add", [i, 1])
            end = done.wait(timeout=300)
            if name != "warmup":
                out[name] = count / (end - start)
    telemetry.shutdown()
    print(json.dumps(out), flush=True)


class _DoneCounter:
    """Counts task ends published on the done channel; records when the expected count is reached."""

    def __init__(self, client: object) -> None:
        self.client = client  # keep it: a collected client closes its pool, the pubsub connection included
        self.pubsub = client.pubsub(ignore_subscribe_messages=True)  # type: ignore[attr-defined]
        self.pubsub.subscribe(DONE_CHANNEL)
        self.cond = threading.Condition()
        self.count = 0
        self.target = 0
        self.reached_at = 0.0
        threading.Thread(target=self._listen, daemon=True).start()

    def _listen(self) -> None:
        for msg in self.pubsub.listen():
            if msg["type"] != "message":
                continue
            with self.cond:
                self.count += 1
                if self.count == self.target:
                    self.reached_at = time.perf_counter()
                    self.cond.notify_all()

    def expect(self, n: int) -> None:
        with self.cond:
            self.count, self.target, self.reached_at = 0, n, 0.0

    def wait(self, timeout: float) -> float:
        with self.cond:
            if not self.cond.wait_for(lambda: self.reached_at, timeout):
                raise RuntimeError(f"only {self.count} of {self.target} tasks finished within {timeout}s")
            return self.reached_at


# -- per-task hook cost ------------------------------------------------------------------------

def _hook_cost(hooks: TaskEventHooks, n: int = 20000) -> dict[str, float]:
    """Nanoseconds per task spent in the hooks: producer spans, the scheduler's task events
    (`hooks`: stored, leased, finished), the attempt span."""

    import conveyor_worker.telemetry as wt  # noqa: PLC0415
    from conveyor.common import Call, submit_request  # noqa: PLC0415
    from conveyor.telemetry import producer_spans  # noqa: PLC0415
    from conveyor.v1 import task_pb2, task_service_pb2  # noqa: PLC0415
    from conveyor_scheduler.store import Submitted  # noqa: PLC0415
    from conveyor_scheduler.validation import NewTask  # noqa: PLC0415

    leased = task_pb2.LeasedTask(task=task_pb2.Task(id="01JD8X0000000000000000000", name="t.add", queue="default",
                                                    attempt=1, headers={}), lease_token="x.1")
    leased.task.started_at.FromMilliseconds(1_700_000_000_000)
    response = task_service_pb2.SubmitResponse(tasks=[task_service_pb2.SubmittedTask(id=leased.task.id,
                                                                                    queue="default")])
    outcome = [task_pb2.AckOutcome(task_id=leased.task.id, status=1, state=4)]
    entries = [("default", None)]

    template = submit_request([Call("t.add", [1, 2])])

    def producer() -> None:
        request = task_service_pb2.SubmitRequest()
        request.CopyFrom(template)  # a fresh request, as every submit builds one
        with producer_spans(request) as spans:
            spans.sent(response)

    def baseline() -> None:
        request = task_service_pb2.SubmitRequest()
        request.CopyFrom(template)

    ack = task_pb2.TaskAck()

    def attempt() -> None:
        if wt.enabled():
            trace = wt.begin(leased)
            with trace.current():
                pass
            trace.end(ack)

    def per_call(fn: object) -> float:
        start = time.perf_counter_ns()
        for _ in range(n):
            fn()  # type: ignore[operator]
        return (time.perf_counter_ns() - start) / n

    specs = list(template.tasks)
    submitted = [Submitted(leased.task.id, "default", 2, False)]
    tasks = [NewTask("default", 0, 0, "", 0, [], name=spec.name) for spec in specs]

    def scheduler() -> None:
        with hooks.storing(specs) as storing:
            storing.stored(submitted, tasks)
        hooks.leased([leased], "w")
        hooks.finished(entries, outcome)  # type: ignore[arg-type]

    out = {"producer": per_call(producer) - per_call(baseline), "scheduler": per_call(scheduler)}
    out["worker"] = per_call(attempt)
    return out


def _hook_costs() -> dict[str, dict[str, float]]:
    """The hook cost with nothing configured (no task-event hook), then with an SDK tracer provider
    recording all spans (the scheduler's telemetry as its hook)."""
    from opentelemetry import trace  # noqa: PLC0415
    from opentelemetry.sdk.trace import TracerProvider  # noqa: PLC0415
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult  # noqa: PLC0415

    import conveyor_scheduler.telemetry as st  # noqa: PLC0415
    from conveyor import telemetry  # noqa: PLC0415
    from conveyor_scheduler.config import Limits  # noqa: PLC0415
    from conveyor_scheduler.task_events import TaskEventHooks  # noqa: PLC0415

    hooks = TaskEventHooks()
    api = _hook_cost(hooks)

    class Drop(SpanExporter):
        def export(self, spans: object) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(Drop(), max_queue_size=100_000))
    trace.set_tracer_provider(provider)
    view = st.SchedulerView(limits=Limits(), redis_url="", redis=None, queue_of=None,  # type: ignore[arg-type]
                            open_sessions=set)
    hooks.add(st.SchedulerTelemetry(view, telemetry.tracer()))
    # The dispatch span needs the producer's context in the task headers, as it has in real use.
    sdk = _hook_cost_with_context(hooks)
    provider.shutdown()
    return {"api": api, "sdk": sdk}


def _hook_cost_with_context(hooks: TaskEventHooks) -> dict[str, float]:
    from conveyor.telemetry import inject, tracer  # noqa: PLC0415

    tr = tracer()
    assert tr is not None
    span = tr.start_span("parent")
    headers: dict[str, str] = {}
    from opentelemetry import trace  # noqa: PLC0415
    inject(headers, trace.set_span_in_context(span))
    span.end()
    import conveyor.v1.task_pb2 as task_pb2  # noqa: PLC0415
    original = task_pb2.Task

    def with_headers(*args: object, **kwargs: object) -> object:
        kwargs["headers"] = headers
        return original(*args, **kwargs)

    task_pb2.Task = with_headers  # type: ignore[misc]
    try:
        return _hook_cost(hooks, 5000)
    finally:
        task_pb2.Task = original  # type: ignore[misc]


# -- the driver ----------------------------------------------------------------------------------

def _env(mode: str, endpoint: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env.update(PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
    env.pop("CONVEYOR_REDIS_URL", None)
    if mode == "otlp":
        env.update(OTEL_EXPORTER_OTLP_ENDPOINT=endpoint, OTEL_EXPORTER_OTLP_PROTOCOL="grpc")
    return env


def _run_mode(mode: str, args: argparse.Namespace, redis_url: str, endpoint: str, log_dir: Path) -> dict[str, float]:
    from tests.harness import free_port, serving, wait_for  # noqa: PLC0415

    env = _env(mode, endpoint)
    me = [sys.executable, str(Path(__file__).resolve())]
    port = free_port()
    target = f"127.0.0.1:{port}"
    procs = []
    try:
        with (log_dir / f"{mode}-scheduler.log").open("ab") as log:
            procs.append(subprocess.Popen(
                [*me, "--role", "scheduler", "--mode", mode, "--", "--port", str(port), "--redis-url", redis_url,
                 "--metrics-port", "0", "--log-level", "WARNING"],
                stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT))
        wait_for(lambda: serving(target) or procs[0].poll() is not None, 30, what="the scheduler")
        with (log_dir / f"{mode}-worker.log").open("ab") as log:
            procs.append(subprocess.Popen(
                [*me, "--role", "worker", "--mode", mode, "--", "tests.apps.basic:app", "--scheduler", target,
                 "--queues", "default", "--concurrency", str(args.concurrency), "--log-level", "WARNING"],
                stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT))
        done = subprocess.run(
            [*me, "--role", "producer", "--mode", mode, "--target", target, "--redis-url", redis_url,
             "--single", str(args.single), "--batch", str(args.batch), "--batch-size", str(args.batch_size)],
            capture_output=True, text=True, env=env, cwd=ROOT, timeout=900, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"producer ({mode}) failed:\n{done.stdout}\n{done.stderr}")
        return json.loads(done.stdout.strip().splitlines()[-1])
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument("--single", type=int, default=2000, help="tasks submitted one per call")
    ap.add_argument("--batch", type=int, default=20000, help="tasks submitted in batches")
    ap.add_argument("--batch-size", type=int, default=500)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--hooks-only", action="store_true", help="only the per-task hook cost (no processes)")
    ap.add_argument("--role", choices=("scheduler", "worker", "producer", "hooks"), help=argparse.SUPPRESS)
    ap.add_argument("--mode", choices=tuple(MODES), help=argparse.SUPPRESS)
    ap.add_argument("--target", help=argparse.SUPPRESS)
    ap.add_argument("--redis-url", help=argparse.SUPPRESS)
    ap.add_argument("rest", nargs="*", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.role in ("scheduler", "worker"):
        _serve(args.role, args.mode, args.rest)
        return
    if args.role == "producer":
        _produce(args.mode, args.target, args.redis_url, args.single, args.batch, args.batch_size)
        return
    if args.role == "hooks":
        print(json.dumps(_hook_costs()), flush=True)
        return
    costs = json.loads(subprocess.run([sys.executable, str(Path(__file__).resolve()), "--role", "hooks"], check=True,
                                      capture_output=True, text=True, env=_env("api", ""), cwd=ROOT).stdout)
    print("per-task hook cost, in-process (ns per task):")
    for mode, label in (("api", "API only, nothing configured"), ("sdk", "SDK tracer, 100% sampled")):
        c = costs[mode]
        print(f"  {mode:4s} {label:30s} producer {c['producer']:8.0f}  scheduler {c['scheduler']:7.0f}"
              f"  worker {c['worker']:7.0f}  total {sum(c.values()):8.0f}")
    if args.hooks_only:
        return

    import tempfile  # noqa: PLC0415

    from tests.harness import RedisServer  # noqa: PLC0415
    from tests.otlp_receiver import OTLPReceiver  # noqa: PLC0415

    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    work = Path(tempfile.mkdtemp(prefix="conveyor-bench-"))
    redis_server = RedisServer(work / "redis").start()
    receiver = OTLPReceiver(keep=False).start()
    results: dict[str, list[dict[str, float]]] = {m: [] for m in modes}
    print(f"tracing overhead: {args.rounds} rounds; single={args.single} batch={args.batch}x{args.batch_size}; "
          f"worker concurrency {args.concurrency}; {os.cpu_count()} CPUs; logs in {work}", flush=True)
    try:
        for r in range(args.rounds):
            for mode in modes:
                res = _run_mode(mode, args, redis_server.url(), receiver.endpoint, work)
                results[mode].append(res)
                print(f"  round {r + 1} {mode:5s} single {res['single']:8.0f}/s  batch {res['batch']:8.0f}/s",
                      flush=True)
    finally:
        receiver.stop()
        redis_server.stop()
    print(f"\n{'mode':5s} {'':52s} {'single/s':>9s} {'vs off':>7s} {'batch/s':>9s} {'vs off':>7s}")
    base = {w: statistics.median(x[w] for x in results[modes[0]]) for w in ("single", "batch")}
    for mode in modes:
        med = {w: statistics.median(x[w] for x in results[mode]) for w in ("single", "batch")}
        print(f"{mode:5s} {MODES[mode]:52s} {med['single']:9.0f} {100 * (med['single'] / base['single'] - 1):+6.1f}% "
              f"{med['batch']:9.0f} {100 * (med['batch'] / base['batch'] - 1):+6.1f}%")
    if "otlp" in modes:
        counts = dict(sorted(receiver.received.span_count.items()))
        print(f"\nspans received by the OTLP receiver, by service: {counts}")


if __name__ == "__main__":
    main()
