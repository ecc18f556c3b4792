"""/workflows (open a workflow by its id: the contract lists no workflows; the tasks list and a
node's task page link to theirs) and /workflows/{id}: its state, run, times, error or result,
progress, its graph (workflow_view.py), and every node in a list a page at a time, filtered by
state; cancel and retry. A running workflow's page follows it (events.workflow_events)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, urlencode

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from conveyor.workflow_snapshots import WorkflowState
from conveyor_dashboard.payloads import show_bytes
from conveyor_dashboard.sessions import Session
from conveyor_dashboard.web import act, page
from conveyor_dashboard.workflow_view import STATES, counts, layout

NODES_PAGE = 100
"""Nodes listed per page below the graph."""
RETRYABLE = frozenset({WorkflowState.FAILED, WorkflowState.CANCELLED})


def workflow_url(workflow_id: str, **query: str | int) -> str:
    shown = urlencode({k: v for k, v in query.items() if v})
    return f"/workflows/{quote(workflow_id, safe='')}" + (f"?{shown}" if shown else "")


async def workflows(request: Request) -> Response:
    wanted = request.query_params.get("id", "").strip()
    if wanted:
        return RedirectResponse(workflow_url(wanted), 303)

    async def load(session: Session) -> Mapping[str, Any]:
        return {}

    return await page(request, "workflows.html", load)


def _offset(text: str) -> int:
    return int(text) if text.isdigit() else 0


async def workflow(request: Request) -> Response:
    workflow_id = request.path_params["workflow_id"]
    state = request.query_params.get("state", "").strip().upper()
    offset = _offset(request.query_params.get("offset", ""))

    async def load(session: Session) -> Mapping[str, Any]:
        if state and state not in STATES:
            raise ValueError(f"state: {state!r} is not one of {', '.join(STATES)}")
        snap = await session.client.workflow(workflow_id).get()
        graph = layout(snap.nodes)
        listed = [n for n in graph.nodes if not state or n.state == state]
        nxt = offset + NODES_PAGE
        record = snap.record
        return {"w": snap, "record": record, "graph": graph, "counts": counts(n.state for n in graph.nodes),
                "terminal": snap.state.terminal, "listed": listed[offset:nxt], "listed_total": len(listed),
                "offset": offset, "state_filter": state,
                "next_url": workflow_url(workflow_id, state=state, offset=nxt) if nxt < len(listed) else "",
                "prev_url": workflow_url(workflow_id, state=state, offset=max(0, offset - NODES_PAGE))
                if offset else "",
                "result": show_bytes(record.result.data, record.result.content_type)
                if record.HasField("result") else None,
                "cancellable": snap.state is WorkflowState.RUNNING, "retryable": snap.state in RETRYABLE}

    return await page(request, "workflow.html", load)


async def cancel(request: Request) -> Response:
    workflow_id = request.path_params["workflow_id"]

    async def run(session: Session, form: FormData) -> str:
        snap = await session.client.workflow(workflow_id).cancel()
        return f"workflow {workflow_id}: {snap.state.name}"

    return await act(request, "workflow.cancel", run, workflow_url(workflow_id))


async def retry(request: Request) -> Response:
    workflow_id = request.path_params["workflow_id"]

    async def run(session: Session, form: FormData) -> str:
        snap = await session.client.workflow(workflow_id).retry()
        return f"workflow {workflow_id}: {snap.state.name}, run {snap.run}"

    return await act(request, "workflow.retry", run, workflow_url(workflow_id))


routes = [
    Route("/workflows", workflows),
    Route("/workflows/{workflow_id}", workflow),
    Route("/workflows/{workflow_id}/cancel", cancel, methods=["POST"]),
    Route("/workflows/{workflow_id}/retry", retry, methods=["POST"]),
]
