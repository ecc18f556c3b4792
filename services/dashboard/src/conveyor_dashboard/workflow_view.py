"""A workflow's graph as the workflow page draws it (pure: no I/O).

Layout: nodes go in columns by depth, the longest path from a root (Kahn's algorithm, so a node
sits to the right of all its parents and the node order need not be topological); within a
column they are ordered by the mean row of their parents (ties: node order), which keeps a group
of chains as parallel rows. The page lays the columns out with CSS and draws the edges as SVG
curves between the elements named here (static/workflow.js); no graph library.

Large workflows: a column of more than COLLAPSE_OVER nodes (a wide group, a chord's header) is
one box: its count per state, and a grid of small state squares, one per node, each a link to its
task (at most MAX_SQUARES; the node list below the graph holds them all, a page at a time). Edges
to and from a box are drawn once per box, not once per node, so a 1,000-node chord is three
elements and two lines whatever its width. A graph deeper than MAX_COLUMNS is not drawn (one box of
all the nodes instead): a long chain reads better as the node list."""

from __future__ import annotations

import collections
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from conveyor.common import TaskState
from conveyor.workflow_snapshots import NodeSnapshot, after_text

COLLAPSE_OVER = 12
"""A column with more nodes than this is drawn as one box of state squares."""
MAX_SQUARES = 2_000
"""State squares drawn in one box; the rest are counted (and listed in the node list)."""
MAX_COLUMNS = 40
"""Deeper graphs are shown as one box of all their nodes, without edges."""
WAITING = "WAITING"
"""A node not submitted yet (NodeState.state UNSPECIFIED): it waits for its parents."""
STATES = [WAITING, *(s.name for s in TaskState if s is not TaskState.UNSPECIFIED)]
"""Every state a node can show, in the order counts are listed."""


def node_state(state: TaskState) -> str:
    return WAITING if state is TaskState.UNSPECIFIED else state.name




def counts(states: Iterable[str]) -> list[tuple[str, int]]:
    """(state, how many) for the states present, in STATES order."""
    found = collections.Counter(states)
    return [(s, found[s]) for s in STATES if found[s]]


@dataclass(frozen=True, slots=True)
class NodeView:
    key: str
    index: int
    """Its place in the workflow's node order."""
    task_id: str
    state: str
    """A TaskState name, or WAITING."""
    name: str
    queue: str
    parents: tuple[str, ...]
    receives: str
    after: str
    depth: int

    @property
    def element(self) -> str:
        """The HTML id of its card or square (keys are [A-Za-z0-9_.:-], valid in an id)."""
        return f"node-{self.key}"


@dataclass(frozen=True, slots=True)
class Column:
    depth: int
    nodes: tuple[NodeView, ...]
    collapsed: bool

    @property
    def element(self) -> str:
        return f"group-{self.depth}"

    @property
    def squares(self) -> tuple[NodeView, ...]:
        return self.nodes[:MAX_SQUARES]

    @property
    def hidden(self) -> int:
        return max(0, len(self.nodes) - MAX_SQUARES)

    def counts(self) -> list[tuple[str, int]]:
        return counts(n.state for n in self.nodes)

    def summary(self, field: str) -> str:
        """The column's distinct task names (field "name") or queues ("queue"), most common first,
        each with its count when there are several: "wf.add (999), wf.wait_file (1)"."""
        found = collections.Counter(getattr(n, field) for n in self.nodes).most_common()
        shown = [f"{v} ({c})" if len(found) > 1 else v for v, c in found[:3]]
        return ", ".join(shown) + (f", … {len(found)} in all" if len(found) > 3 else "")

    @property
    def after(self) -> str:
        """Its nodes' common "after" text, or "" when they differ."""
        texts = {n.after for n in self.nodes}
        return texts.pop() if len(texts) == 1 else ""


@dataclass(frozen=True, slots=True)
class Graph:
    nodes: tuple[NodeView, ...]
    """Every node, in node order."""
    columns: tuple[Column, ...]
    edges: tuple[tuple[str, str], ...]
    """(from element id, to element id), each pair once."""
    drawn: bool
    """False: too deep to draw; `columns` is then one box of every node, with no edge."""

    def groups(self) -> dict[str, str]:
        """The box each collapsed node is counted in: node key -> box element id."""
        return {n.key: c.element for c in self.columns if c.collapsed for n in c.nodes}


def depths(nodes: Sequence[NodeSnapshot]) -> dict[str, int]:
    """Each node's longest path from a root (0 for a root). Iterative, O(nodes + edges); a node
    the scheduler would never have accepted (on a cycle, or naming unknown parents only) is a root."""
    known = {n.key for n in nodes}
    children: dict[str, list[str]] = collections.defaultdict(list)
    waiting: dict[str, int] = {}
    for n in nodes:
        parents = {p for p in n.parents if p in known}
        waiting[n.key] = len(parents)
        for p in parents:
            children[p].append(n.key)
    depth = dict.fromkeys(known, 0)
    ready = collections.deque(n.key for n in nodes if waiting[n.key] == 0)
    while ready:
        key = ready.popleft()
        for child in children[key]:
            depth[child] = max(depth[child], depth[key] + 1)
            waiting[child] -= 1
            if waiting[child] == 0:
                ready.append(child)
    return depth


def layout(snapshot_nodes: Sequence[NodeSnapshot]) -> Graph:
    depth = depths(snapshot_nodes)
    views = tuple(NodeView(n.key, i, n.task_id, node_state(n.state), n.name, n.queue, n.parents, n.receives,
                           after_text(n), depth[n.key]) for i, n in enumerate(snapshot_nodes))
    if not views:
        return Graph(views, (), (), True)
    levels = max(depth.values()) + 1
    if levels > MAX_COLUMNS:
        return Graph(views, (Column(0, views, True),), (), False)
    by_depth: list[list[NodeView]] = [[] for _ in range(levels)]
    for v in views:
        by_depth[v.depth].append(v)
    row: dict[str, float] = {}
    columns: list[Column] = []
    for d, members in enumerate(by_depth):
        if d:  # by the mean row of their parents; sorted() is stable, so ties keep node order
            members.sort(key=lambda v: sum(row.get(p, 0) for p in v.parents) / len(v.parents) if v.parents else 0)
        for i, v in enumerate(members):
            row[v.key] = i
        columns.append(Column(d, tuple(members), len(members) > COLLAPSE_OVER))
    element = {v.key: (c.element if c.collapsed else v.element) for c in columns for v in c.nodes}
    edges: dict[tuple[str, str], None] = {}
    for v in views:
        for p in v.parents:
            if p in element:
                edges[(element[p], element[v.key])] = None
    return Graph(views, tuple(columns), tuple(edges), True)
