"""Workflows: a graph of tasks, advanced by the scheduler exactly once per node outcome.

The walk of one workflow:
1. SubmitWorkflow validates the graph (workflow_checks), stores it (wf_create.lua, in the
   workflow's own slot {w:ID}) and submits its roots.
2. When a node's task ends (any script that ends a task goes through lib.lua's finish()),
   the same atomic step appends its outcome to its queue's outbox (cv:{q:QUEUE}:wo) and
   publishes the queue on cv:wfo.
3. A replica reads the entry through the outbox's consumer group (each entry goes to one
   replica), applies it to the workflow (wf_apply.lua: idempotent per node), submits the
   children it released with the idempotency key wf:ID:RUN:NODE, records them
   (wf_mark.lua), and only then acknowledges and deletes the entry.

Why nothing is lost or doubled (docs/ARCHITECTURE.md, "Workflows"): the outcome is written with
the task's end, in the task's slot, so it cannot be lost; an entry is deleted only after
everything it caused is stored, so a replica that dies midway leaves it to be claimed
by another (XAUTOCLAIM after CLAIM_IDLE_MS) and replayed, and an entry no replica read (they
died before their read, or it failed) is read by the next sweep; a replay applies nothing twice
(the node's state in the workflow says it was applied) and submits nothing twice (the
idempotency key returns the task already made). Roots and retried nodes have no outbox
entry behind them: the workflow sits in a recovery set (cv:{cv}:wfr) until its released
nodes are recorded, and the sweep finishes the job of a replica that died before that.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from opentelemetry import propagate
from redis.exceptions import RedisError

from conveyor.v1 import task_pb2, workflow_pb2
from conveyor_scheduler.background import Background
from conveyor_scheduler.errors import FailedPrecondition, InvalidArgument, NotFound
from conveyor_scheduler.ids import new_task_id
from conveyor_scheduler.store import Submitted
from conveyor_scheduler.workflow_checks import CheckTask, check_workflow
from conveyor_scheduler.workflow_payloads import (
    NodeError,
    error_json,
    node_payload,
    outcome_of,
    workflow_result,
)
from conveyor_scheduler.workflow_store import GraphNode, OutboxEntry, Released, WorkflowStore

log = logging.getLogger(__name__)

CLAIM_IDLE_MS = 10_000
"""An outbox entry unacknowledged this long is claimed by the sweeping replica."""
RECOVERY_AFTER_MS = 10_000
"""A workflow whose released nodes are not recorded this long after release is finished by the sweep."""
SWEEP_S = 2.0
SUBMIT_CHUNK = 1000
"""Nodes submitted (and recorded) per call: a group of 100,000 roots never makes one huge script call."""
IDEMPOTENCY_WINDOW_MS = 24 * 3600 * 1000
"""How long a node's idempotency key outlives its submit: far beyond any replay (seconds)."""
RUNNING = workflow_pb2.WORKFLOW_STATE_RUNNING
SUBMITTED = 2
"""A node's state in its workflow between its submit and its task's end (wf_lib.lua)."""
ID_PREFIX = "wf_"

NodeTask = tuple[task_pb2.TaskSpec, list[str | bytes | int]]
"""A node's task to submit, with the task hash fields that tie it to its workflow."""
SubmitNodes = Callable[[list[NodeTask]], Awaitable[list[Submitted]]]
CancelTasks = Callable[[list[str]], Awaitable[None]]
TaskStates = Callable[[list[str]], Awaitable[list[int]]]
"""The states of task ids (0 for a task whose record is gone)."""


def check_workflow_id(workflow_id: str, field: str = "workflow_id") -> str:
    if not (workflow_id.startswith(ID_PREFIX) and len(workflow_id) == len(ID_PREFIX) + 26
            and workflow_id[len(ID_PREFIX):].isalnum()):
        raise InvalidArgument(field, f"is not a workflow id (\"wf_\" and 26 characters), got {workflow_id[:60]!r}")
    return workflow_id


@dataclass
class _Drain:
    """One queue's outbox reader: at most one per queue per replica, run again if woken meanwhile."""

    task: asyncio.Task[None] | None = None
    again: bool = False


class Workflows:
    def __init__(self, store: WorkflowStore, *, check_task: CheckTask, submit_nodes: SubmitNodes,
                 cancel_tasks: CancelTasks, task_states: TaskStates, consumer: str) -> None:
        self.store = store
        self.check_task = check_task
        self.submit_nodes = submit_nodes
        self.cancel_tasks = cancel_tasks
        self.task_states = task_states
        self.consumer = consumer
        """This replica's name in the outboxes' consumer group."""
        self._drains: dict[str, _Drain] = {}
        self._background = Background()
        self._sweeper: asyncio.Task[None] | None = None
        self._listeners: dict[str, set[asyncio.Event]] = {}

    def start(self) -> None:
        self._sweeper = asyncio.get_running_loop().create_task(self._sweep_forever(), name="workflow-sweep")

    async def close(self) -> None:
        tasks = [t for t in (self._sweeper, *(d.task for d in self._drains.values())) if t is not None]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # -- SubmitWorkflow, CancelWorkflow, RetryWorkflow ------------------------------------------

    async def submit(self, spec: workflow_pb2.WorkflowSpec) -> str:
        nodes = check_workflow(spec, self.check_task)
        workflow_id = ID_PREFIX + new_task_id(0, self.store.clock())
        trace: dict[str, str] = {}
        propagate.inject(trace)  # the SubmitWorkflow call's trace: every node's task joins it
        await self.store.prepare_outboxes(sorted({n.queue for n in nodes}))
        await self.store.watch_for_recovery(workflow_id, RECOVERY_AFTER_MS)
        await self.store.create(workflow_id, nodes, name=spec.name, policy=spec.on_failure, trace=trace)
        roots = [_root(n) for n in nodes if not n.parents]
        await self._submit(workflow_id, 1, roots, spec.on_failure == workflow_pb2.FAILURE_POLICY_CONTINUE, trace)
        await self.store.recovered(workflow_id)
        return workflow_id

    async def cancel(self, workflow_id: str) -> None:
        state, tasks = await self.store.cancel(check_workflow_id(workflow_id))
        if state == 0:
            raise NotFound(f"no workflow {workflow_id} (it never existed, or its record expired)")
        if state != RUNNING:
            raise FailedPrecondition(f"workflow {workflow_id} already ended as "
                                     f"{workflow_pb2.WorkflowState.Name(state).removeprefix('WORKFLOW_STATE_')}")
        await self.cancel_tasks(tasks)

    async def retry(self, workflow_id: str) -> None:
        check_workflow_id(workflow_id)
        await self.store.watch_for_recovery(workflow_id, RECOVERY_AFTER_MS)
        try:
            state, run, released = await self.store.retry(workflow_id)
            if state == 0:
                raise NotFound(f"no workflow {workflow_id} (it never existed, or its record expired)")
            if state not in (workflow_pb2.WORKFLOW_STATE_FAILED, workflow_pb2.WORKFLOW_STATE_CANCELLED):
                raise FailedPrecondition(f"workflow {workflow_id} is "
                                         f"{workflow_pb2.WorkflowState.Name(state).removeprefix('WORKFLOW_STATE_')}"
                                         ": only a FAILED or CANCELLED one runs again")
            policy, trace = await self._policy_and_trace(workflow_id)
            await self._submit(workflow_id, run, released, policy, trace)
        finally:
            await self.store.recovered(workflow_id)

    # -- advancing: outbox entries -> applied -> children submitted ----------------------------

    def outbox_written(self, prefix: str) -> None:
        """The event bus heard that a queue's outbox got an entry ("cv:{q:QUEUE}:")."""
        if prefix.startswith("cv:{q:") and prefix.endswith("}:"):
            self.drain_soon(prefix[6:-2])

    def drain_soon(self, queue: str) -> None:
        drain = self._drains.setdefault(queue, _Drain())
        if drain.task is not None and not drain.task.done():
            drain.again = True
            return
        drain.task = asyncio.get_running_loop().create_task(self._drain(queue, drain), name=f"workflow-outbox-{queue}")

    def drain_all_soon(self) -> None:
        """After the event bus reconnected: a message may have been missed on any queue."""
        self._background.spawn(self._drain_known())

    async def _drain_known(self) -> None:
        try:
            for queue in await self.store.outbox_queues():
                self.drain_soon(queue)
        except RedisError as exc:  # the sweep covers it
            log.info("workflow outboxes not read after reconnect: %s", exc)

    async def _drain(self, queue: str, drain: _Drain) -> None:
        try:
            while True:
                drain.again = False
                entries = await self.store.read_outbox(queue, self.consumer)
                if entries:
                    await self._handle(queue, entries)
                elif not drain.again:
                    return
        except RedisError as exc:  # the sweep reads what is left, and claims what was read and not applied
            log.warning("workflow outbox of queue %s: %s (the sweep retries)", queue, exc)
        except Exception:  # a bug: say so; the entry stays unacknowledged, so the sweep retries it
            log.exception("workflow outbox of queue %s: an entry could not be applied", queue)

    async def _handle(self, queue: str, entries: Sequence[OutboxEntry]) -> None:
        """Applies a batch of entries, one script call per workflow (its entries in order), and
        acknowledges each workflow's entries once everything they caused is stored."""
        by_workflow: dict[str, list[OutboxEntry]] = {}
        for entry in entries:
            by_workflow.setdefault(entry.workflow_id, []).append(entry)
        for workflow_id, mine in by_workflow.items():
            await self._apply(workflow_id, mine)
            await self.store.done(queue, [e.entry_id for e in mine])

    async def _apply(self, workflow_id: str, entries: list[OutboxEntry]) -> None:
        applied = await self.store.apply(workflow_id, [(e, outcome_of(e.state, e.result, e.result_type, e.error_type,
                                                                      e.error_message)) for e in entries])
        if applied.cancel:
            await self.cancel_tasks(applied.cancel)
        if applied.released:
            await self._submit(workflow_id, int(entries[-1].run), applied.released, applied.continue_on_failure,
                               applied.trace)

    async def _policy_and_trace(self, workflow_id: str) -> tuple[bool, dict[str, str]]:
        policy, trace = await self.store.policy_and_trace(workflow_id)
        return policy == workflow_pb2.FAILURE_POLICY_CONTINUE, trace

    async def _submit(self, workflow_id: str, run: int, released: list[Released], continue_on_failure: bool,
                      trace: dict[str, str]) -> None:
        """Submits released nodes (idempotently) and records their tasks; a node that cannot get its
        parents' results fails without running, and what that releases is submitted in turn."""
        while released:
            tasks: list[NodeTask] = []
            keys: list[str] = []
            failed: list[tuple[str, NodeError]] = []
            for node in released:
                spec = task_pb2.TaskSpec.FromString(node.spec)
                try:
                    spec.payload = node_payload(spec.payload, node.mode, node.parents, node.outcomes,
                                                continue_on_failure)
                except NodeError as exc:
                    failed.append((node.key, exc))
                    continue
                spec.idempotency_key = f"wf:{workflow_id}:{run}:{node.key}"
                spec.idempotency_window.FromMilliseconds(IDEMPOTENCY_WINDOW_MS)
                if trace:  # the workflow's trace replaces any of the node's own (one trace per workflow)
                    for name in ("traceparent", "tracestate"):
                        spec.headers.pop(name, None)
                    spec.headers.update(trace)
                tasks.append((spec, ["wf", workflow_id, "wn", node.key, "wr", run]))
                keys.append(node.key)
            for start in range(0, len(tasks), SUBMIT_CHUNK):
                chunk, chunk_keys = tasks[start:start + SUBMIT_CHUNK], keys[start:start + SUBMIT_CHUNK]
                try:
                    submitted = await self.submit_nodes(chunk)
                except InvalidArgument:  # a node the submit path refuses for good: find it, fail it alone
                    submitted, chunk_keys = await self._one_by_one(chunk, chunk_keys, failed)
                unwanted = await self.store.mark(workflow_id, [(k, s.id) for k, s in zip(chunk_keys, submitted,
                                                                                        strict=True)])
                if unwanted:
                    await self.cancel_tasks(unwanted)
            released = []
            for key, error in failed:  # fails like a task would, through the same apply
                entry = OutboxEntry("", "", workflow_id, key, str(run), task_pb2.TASK_STATE_FAILED, b"", "",
                                    error.type, str(error))
                outcome = outcome_of(entry.state, b"", "", error.type, str(error))
                applied = await self.store.apply(workflow_id, [(entry, outcome)])
                if applied.cancel:
                    await self.cancel_tasks(applied.cancel)
                released += applied.released

    async def _one_by_one(self, tasks: list[NodeTask], keys: list[str], failed: list[tuple[str, NodeError]]
                          ) -> tuple[list[Submitted], list[str]]:
        """Submits nodes one at a time; the ones refused (INVALID_ARGUMENT) join `failed`, so a
        node that can never be submitted fails its workflow instead of being retried forever."""
        submitted: list[Submitted] = []
        kept: list[str] = []
        for task, key in zip(tasks, keys, strict=True):
            try:
                submitted += await self.submit_nodes([task])
                kept.append(key)
            except InvalidArgument as exc:
                failed.append((key, NodeError("InvalidArgument", str(exc))))
        return submitted, kept

    # -- the sweep: what a dead replica left behind -----------------------------------------------

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_S)
            try:
                await self.sweep()
            except RedisError as exc:
                log.warning("workflow sweep failed (%s); next in %.0fs", exc, SWEEP_S)
            except Exception:
                log.exception("workflow sweep failed")

    async def sweep(self) -> None:
        """Claims and applies outbox entries left unacknowledged; reads entries nobody read;
        finishes releases left unrecorded.

        XAUTOCLAIM only finds entries a consumer was handed. An entry that no replica has read
        yet is found by a read of new entries alone, which only a publish on cv:wfo (or a
        reconnect) starts: when every replica that heard it died before its read, or its read
        failed, the next publish on that queue may never come (the entry was the last node
        of its workflow running there), so every sweep reads too."""
        for queue in await self.store.outbox_queues():
            try:
                while entries := await self.store.claim_stale(queue, self.consumer, CLAIM_IDLE_MS):
                    await self._handle(queue, entries)
            except Exception:  # one queue's trouble must not stop the sweep of the others
                log.exception("workflow sweep: the outbox of queue %s", queue)
            self.drain_soon(queue)
        for workflow_id in await self.store.due_for_recovery():
            try:
                state, run, released = await self.store.ready(workflow_id)
                if state == RUNNING and released:
                    policy, trace = await self._policy_and_trace(workflow_id)
                    await self._submit(workflow_id, run, released, policy, trace)
                await self.store.recovered(workflow_id)
            except Exception:  # nor one workflow's the recovery of the others
                log.exception("workflow sweep: recovering workflow %s", workflow_id)

    # -- reading: GetWorkflow and WatchWorkflow ------------------------------------------------------

    def changed(self, workflow_id: str) -> None:
        """The event bus heard that a workflow changed: wake its watchers."""
        for event in self._listeners.get(workflow_id, ()):
            event.set()

    def changed_all(self) -> None:
        for events in self._listeners.values():
            for event in events:
                event.set()

    def listen(self, workflow_id: str) -> asyncio.Event:
        event = asyncio.Event()
        self._listeners.setdefault(workflow_id, set()).add(event)
        return event

    def unlisten(self, workflow_id: str, event: asyncio.Event) -> None:
        events = self._listeners.get(workflow_id)
        if events is not None:
            events.discard(event)
            if not events:
                del self._listeners[workflow_id]

    async def snapshot(self, workflow_id: str) -> workflow_pb2.Workflow:
        found = await self.store.read(check_workflow_id(workflow_id))
        if found is None:
            raise NotFound(f"no workflow {workflow_id} (it never existed, or its record expired)")
        meta, order, maps = found
        wf = workflow_pb2.Workflow(id=workflow_id, name=meta.get(b"nm", b"").decode(), state=int(meta[b"st"]),
                                   on_failure=int(meta.get(b"pol", 0)), run=int(meta.get(b"run", 1)),
                                   finished_nodes=int(meta.get(b"nf", 0)))
        wf.created_at.FromMilliseconds(int(meta[b"ca"]))
        if b"fa" in meta:
            wf.finished_at.FromMilliseconds(int(meta[b"fa"]))
        graph, states, tasks = maps["graph"], maps["states"], maps["tasks"]
        live = [k for k in order if int(states.get(k.encode(), 0)) == SUBMITTED
                and tasks.get(k.encode())]  # submitted, not finished: ask the task itself
        live_states = dict(zip(live, await self.task_states([tasks[k.encode()].decode() for k in live]),
                               strict=True)) if live else {}
        leaves: list[str] = []
        for key in order:
            g = json.loads(graph[key.encode()])
            state = int(states.get(key.encode(), 0))
            if key in live_states:
                state = live_states[key] or task_pb2.TASK_STATE_QUEUED
            elif state == 0:
                state = task_pb2.TASK_STATE_UNSPECIFIED
            wf.nodes.append(workflow_pb2.NodeState(key=key, task_id=tasks.get(key.encode(), b"").decode(),
                                                   state=state, name=g["n"], queue=g["q"], parents=g["p"],
                                                   parent_results=g["m"]))
            if not g["c"]:
                leaves.append(key)
        if wf.state == workflow_pb2.WORKFLOW_STATE_SUCCEEDED:
            wf.result.data = workflow_result(leaves, await self.store.outcomes(workflow_id, leaves))
        elif wf.state == workflow_pb2.WORKFLOW_STATE_FAILED and b"en" in meta:
            error = error_json(meta.get(b"ee"))
            wf.error.node = meta[b"en"].decode()
            wf.error.task_id = meta.get(b"ei", b"").decode()
            wf.error.state = int(meta.get(b"es", 0) or 0)
            wf.error.error.type = error.get("type", "")
            wf.error.error.message = error.get("message", "")
        return wf


def _root(node: GraphNode) -> Released:
    return Released(node.key, node.spec, node.mode, [], [])
