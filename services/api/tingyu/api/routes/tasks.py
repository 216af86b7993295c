"""Task interface (contract §一): the state of any asynchronous operation by job id."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from tingyu.api.deps import BusDep, SettingsDep, caller
from tingyu.api.envelope import Envelope, EnvelopeRoute, InfoEnvelope, ok, ok_info
from tingyu.api.params import JobId, JobIds
from tingyu.api.schemas.tasks import JobLog, TaskState
from tingyu.api.services import tasks

router = APIRouter(prefix="/task", tags=["tasks"], route_class=EnvelopeRoute, dependencies=[Depends(caller)])


@router.get("/status", response_model=InfoEnvelope[list[TaskState]])
async def status(bus: BusDep, settings: SettingsDep, ids: JobIds) -> InfoEnvelope[list[TaskState]]:
    """Job states by comma-separated jobid (folded): 0 queued, 1 dispatched, 2 running, 3 done, 4 failed."""
    return ok_info(await tasks.states(bus, settings, ids))


@router.get("/log", response_model=Envelope[JobLog])
async def log(bus: BusDep, settings: SettingsDep, job_id: JobId) -> Envelope[JobLog]:
    """A job's log lines (extension): what the platform services logged while working on it, oldest first."""
    return ok(await tasks.log(bus, settings, job_id))
