"""Task interface (contract §一): the state of any asynchronous operation by job id."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query

from tingyu.api import envelope, state
from tingyu.api.concurrency import gather_bounded
from tingyu.api.deps import BusDep, SettingsDep
from tingyu.common.errors import InvalidParameter, MissingParameter
from tingyu.common.models.jobs import Job
from tingyu.common.names import split_csv
from tingyu.common.timefmt import to_wire

router = APIRouter(prefix="/task", tags=["tasks"])


def job_view(job: Job, timezone: str) -> dict[str, Any]:
    """Contract fields (deploymentname, state, uuid = nodename, deviceid = machine uuid) and extensions."""

    view: dict[str, Any] = {
        "code": 200,
        "jobid": job.job_id,
        "deploymentname": job.deploymentname,
        "state": int(job.state),
        "uuid": job.nodename,
        "deviceid": job.node_uuid,
        "kind": job.kind.value,
        "op": job.op,
        "message": job.message,
        "createtime": to_wire(job.created_at, timezone),
        "updatetime": to_wire(job.updated_at, timezone),
    }
    if job.result:
        view["result"] = job.result
    return view


@router.get("/status")
async def status(bus: BusDep, settings: SettingsDep, jobid: str = Query("")) -> dict[str, Any]:
    """Job states by comma-separated jobid (folded): 0 queued, 1 dispatched, 2 running, 3 done, 4 failed."""
    ids = list(dict.fromkeys(split_csv(jobid)))  # a job asked twice is answered once
    if not ids:
        raise MissingParameter(detail="jobid is required (comma-separated job ids)")
    if len(ids) > settings.max_items:
        raise InvalidParameter(detail=f"at most {settings.max_items} job ids per request")

    async def one(job_id: str) -> dict[str, Any]:
        job = await state.job(bus, job_id) if job_id.isalnum() else None
        if job is None:
            return {"code": 500, "jobid": job_id, "message": f"job {job_id} not found"}
        return job_view(job, settings.platform.timezone)

    return envelope.ok_info(await gather_bounded([one(job_id) for job_id in ids]))
