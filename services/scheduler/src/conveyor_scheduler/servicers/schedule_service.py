"""conveyor.v1.ScheduleService: create, update, delete, pause, resume, get, list and fire schedules.

Thin: validation and storage live in beat.py / schedules.py.
"""

from __future__ import annotations

import grpc

from conveyor.v1 import schedule_service_pb2 as pb
from conveyor_scheduler.beat import Beat
from conveyor_scheduler.errors import InvalidArgument
from conveyor_scheduler.schedules import ScheduleDef, to_schedule


class ScheduleService:
    def __init__(self, beat: Beat) -> None:
        self.beat = beat

    def _definition(self, request: pb.CreateScheduleRequest | pb.UpdateScheduleRequest) -> ScheduleDef:
        if not request.HasField("schedule"):
            raise InvalidArgument("schedule", "must be set")
        return self.beat.check(request.schedule)

    async def CreateSchedule(self, request: pb.CreateScheduleRequest, context: grpc.aio.ServicerContext
                             ) -> pb.CreateScheduleResponse:
        rec = await self.beat.create(self._definition(request))
        return pb.CreateScheduleResponse(schedule=to_schedule(rec))

    async def UpdateSchedule(self, request: pb.UpdateScheduleRequest, context: grpc.aio.ServicerContext
                             ) -> pb.UpdateScheduleResponse:
        rec = await self.beat.update(self._definition(request), allow_missing=request.allow_missing)
        return pb.UpdateScheduleResponse(schedule=to_schedule(rec))

    async def DeleteSchedule(self, request: pb.DeleteScheduleRequest, context: grpc.aio.ServicerContext
                             ) -> pb.DeleteScheduleResponse:
        await self.beat.delete(request.schedule_id)
        return pb.DeleteScheduleResponse()

    async def PauseSchedule(self, request: pb.PauseScheduleRequest, context: grpc.aio.ServicerContext
                            ) -> pb.PauseScheduleResponse:
        return pb.PauseScheduleResponse(schedule=to_schedule(await self.beat.set_paused(request.schedule_id, True)))

    async def ResumeSchedule(self, request: pb.ResumeScheduleRequest, context: grpc.aio.ServicerContext
                             ) -> pb.ResumeScheduleResponse:
        return pb.ResumeScheduleResponse(schedule=to_schedule(await self.beat.set_paused(request.schedule_id, False)))

    async def GetSchedule(self, request: pb.GetScheduleRequest, context: grpc.aio.ServicerContext
                          ) -> pb.GetScheduleResponse:
        return pb.GetScheduleResponse(schedule=to_schedule(await self.beat.get(request.schedule_id)))

    async def ListSchedules(self, request: pb.ListSchedulesRequest, context: grpc.aio.ServicerContext
                            ) -> pb.ListSchedulesResponse:
        records, token = await self.beat.page(request.page_size, request.page_token)
        return pb.ListSchedulesResponse(schedules=[to_schedule(r) for r in records], next_page_token=token,
                                        beat_leader=await self.beat.store.leader())

    async def FireSchedule(self, request: pb.FireScheduleRequest, context: grpc.aio.ServicerContext
                           ) -> pb.FireScheduleResponse:
        task_id, rec = await self.beat.fire_now(request.schedule_id)
        return pb.FireScheduleResponse(task_id=task_id, schedule=to_schedule(rec))
