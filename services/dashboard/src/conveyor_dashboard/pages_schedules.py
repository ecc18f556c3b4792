"""/schedules: cron or interval, next and last fire, missed count, last error; pause, resume,
fire now (ScheduleService has no fire call: "fire" submits the schedule's task template once,
with the header conveyor-schedule-id, as a firing would; it does not move next_fire_time)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from conveyor.v1 import schedule_service_pb2, schedule_service_pb2_grpc, task_pb2
from conveyor_dashboard.render import duration
from conveyor_dashboard.sessions import Session
from conveyor_dashboard.web import act, page

PAGE_SIZE = 100


def trigger(s: schedule_service_pb2.Schedule) -> str:
    if s.HasField("cron"):
        return f"cron {s.cron.expression}" + (f" ({s.cron.time_zone})" if s.cron.time_zone else "")
    return f"every {duration(s.interval)}"


def state(s: schedule_service_pb2.Schedule) -> str:
    return schedule_service_pb2.ScheduleState.Name(s.state).removeprefix("SCHEDULE_STATE_")


async def schedules(request: Request) -> Response:
    cursor = request.query_params.get("cursor", "")

    async def load(session: Session) -> Mapping[str, Any]:
        stub = schedule_service_pb2_grpc.ScheduleServiceStub(session.channel)  # one page, not the SDK's walk
        resp: schedule_service_pb2.ListSchedulesResponse = await stub.ListSchedules(
            schedule_service_pb2.ListSchedulesRequest(page_size=PAGE_SIZE, page_token=cursor), timeout=30)
        return {"schedules": resp.schedules, "leader": resp.beat_leader, "trigger": trigger, "state": state,
                "next_url": f"/schedules?cursor={resp.next_page_token}" if resp.next_page_token else ""}

    return await page(request, "schedules.html", load)


async def pause(request: Request) -> Response:
    schedule_id = request.path_params["schedule_id"]

    async def run(session: Session, form: FormData) -> str:
        await session.client.schedules.pause(schedule_id)
        return f"paused schedule {schedule_id}"

    return await act(request, "schedule.pause", run, "/schedules")


async def resume(request: Request) -> Response:
    schedule_id = request.path_params["schedule_id"]

    async def run(session: Session, form: FormData) -> str:
        await session.client.schedules.resume(schedule_id)
        return f"resumed schedule {schedule_id}"

    return await act(request, "schedule.resume", run, "/schedules")


async def fire(request: Request) -> Response:
    schedule_id = request.path_params["schedule_id"]

    async def run(session: Session, form: FormData) -> str:
        schedule = await session.client.schedules.get(schedule_id)
        spec = task_pb2.TaskSpec()
        spec.CopyFrom(schedule.template)
        spec.headers["conveyor-schedule-id"] = schedule_id
        handle = await session.client.send_call(spec)
        return f"fired schedule {schedule_id}: task {await handle.sent()}"

    return await act(request, "schedule.fire", run, "/schedules")


routes = [
    Route("/schedules", schedules),
    Route("/schedules/{schedule_id}/pause", pause, methods=["POST"]),
    Route("/schedules/{schedule_id}/resume", resume, methods=["POST"]),
    Route("/schedules/{schedule_id}/fire", fire, methods=["POST"]),
]
