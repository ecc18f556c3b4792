"""A workflow as the scheduler last told it (the contract's Workflow, read into Python types),
and its outcome: the decoded result, or the error its end stands for."""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass, field
from typing import Any, Literal

from conveyor.common import TaskState
from conveyor.errors import WorkflowCancelled, WorkflowError, WorkflowFailed
from conveyor.serialization import decode_result
from conveyor.v1 import workflow_pb2 as wf

Received = Literal["nothing", "value", "list"]
"""What a node gets from its parents (ParentResults): nothing, the one parent's result, or the
list of its parents' results."""
RECEIVED: dict[int, Received] = {wf.PARENT_RESULTS_UNSPECIFIED: "nothing", wf.PARENT_RESULTS_VALUE: "value",
                                 wf.PARENT_RESULTS_LIST: "list"}


class WorkflowState(enum.IntEnum):
    """Where a workflow is (mirrors conveyor.v1.WorkflowState)."""

    UNSPECIFIED = 0
    RUNNING = 1
    SUCCEEDED = 2
    FAILED = 3
    CANCELLED = 4

    @property
    def terminal(self) -> bool:
        return self >= WorkflowState.SUCCEEDED


@dataclass(frozen=True, slots=True)
class NodeSnapshot:
    """One node: its task (once submitted) and that task's state."""

    key: str
    task_id: str
    """Empty until the node is submitted."""
    state: TaskState
    """UNSPECIFIED while it waits for its parents; CANCELLED if it never will be submitted."""
    name: str
    queue: str
    parents: tuple[str, ...]
    receives: Received

    @property
    def submitted(self) -> bool:
        return bool(self.task_id)

    @classmethod
    def of(cls, n: wf.NodeState) -> NodeSnapshot:
        return cls(n.key, n.task_id, TaskState(n.state), n.name, n.queue, tuple(n.parents),
                   RECEIVED.get(n.parent_results, "nothing"))


@dataclass(frozen=True, slots=True)
class FailedNode:
    """The node that failed a workflow (WorkflowError in the contract)."""

    node: str
    task_id: str
    state: TaskState
    error_type: str
    error_message: str
    traceback: str


@dataclass(frozen=True, slots=True)
class WorkflowSnapshot:
    """A workflow at one moment: state, run, nodes, and its error or result once it ended."""

    id: str
    name: str
    state: WorkflowState
    on_failure: Literal["fail_fast", "continue"]
    run: int
    """1 for the first run; each retry adds 1."""
    created_at: dt.datetime
    finished_at: dt.datetime | None
    nodes: tuple[NodeSnapshot, ...]
    """In the order they were submitted in."""
    finished_nodes: int
    error: FailedNode | None
    """Set when it FAILED."""
    record: wf.Workflow = field(repr=False, compare=False)
    """The message as received (for --json, and fields added to the contract later)."""

    @classmethod
    def of(cls, w: wf.Workflow) -> WorkflowSnapshot:
        error = None
        if w.HasField("error"):
            e = w.error
            error = FailedNode(e.node, e.task_id, TaskState(e.state), e.error.type, e.error.message,
                               e.error.traceback)
        return cls(w.id, w.name, WorkflowState(w.state),
                   "continue" if w.on_failure == wf.FAILURE_POLICY_CONTINUE else "fail_fast", w.run,
                   w.created_at.ToDatetime(dt.UTC), w.finished_at.ToDatetime(dt.UTC) if w.HasField("finished_at")
                   else None, tuple(NodeSnapshot.of(n) for n in w.nodes), w.finished_nodes, error, w)

    def node(self, key: str) -> NodeSnapshot:
        for n in self.nodes:
            if n.key == key:
                return n
        raise KeyError(f"workflow {self.id} has no node {key!r}")

    def outcome(self) -> Any:
        """The workflow's result (its one leaf's, or the list of its leaves' in node order), or the
        WorkflowError its end stands for (WorkflowFailed, WorkflowCancelled)."""
        if self.state is WorkflowState.SUCCEEDED:
            return decode_result(self.record.result.data, self.record.result.content_type)
        if self.state is WorkflowState.FAILED:
            e = self.error or FailedNode("?", "", TaskState.UNSPECIFIED, "", "the scheduler named no node", "")
            raise WorkflowFailed(self.id, e.node, e.task_id, e.state.name, e.error_type, e.error_message, e.traceback)
        if self.state is WorkflowState.CANCELLED:
            raise WorkflowCancelled(self.id, self.state.name, "")
        raise WorkflowError(self.id, self.state.name, "not finished")

    def progress(self) -> str:
        """Like "3/10 nodes finished"."""
        return f"{self.finished_nodes}/{len(self.nodes)} nodes finished"


SHOWN_PARENTS = 4
"""Parents named in after_text before the rest is counted."""


def after_text(node: NodeSnapshot) -> str:
    """Whom the node runs after and what it gets from them, as the CLI and the dashboard say it:
    "0 (value)", "0, 1, 2 (list)", "0, 1, 2, 3, … 10 in all (list)", "4 (waits only)"; "" for a
    root (one that gets its empty list says "[] (list)")."""
    if not node.parents:
        return "[] (list)" if node.receives == "list" else ""
    names = ", ".join(node.parents[:SHOWN_PARENTS])
    if len(node.parents) > SHOWN_PARENTS:
        names += f", … {len(node.parents)} in all"
    return f"{names} ({'waits only' if node.receives == 'nothing' else node.receives})"
