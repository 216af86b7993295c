"""Tasks (contract §一): the state of any asynchronous operation by job id."""

from __future__ import annotations

from tingyu.api import reads, texts
from tingyu.api.concurrency import gather_bounded
from tingyu.api.config import ApiSettings
from tingyu.api.schemas.tasks import JobLog, JobLogLine, TaskState
from tingyu.common import joblog
from tingyu.common.bus import Bus
from tingyu.common.models.jobs import Job
from tingyu.common.timefmt import to_wire


def task_state(job: Job, timezone: str) -> TaskState:
    """Contract fields (deploymentname, state, uuid = nodename, deviceid = machine uuid) and extensions."""
    view = TaskState(
        code=200,
        jobid=job.job_id,
        deploymentname=job.deploymentname,
        state=int(job.state),
        uuid=job.nodename,
        deviceid=job.node_uuid,
        kind=job.kind.value,
        op=job.op,
        message=job.message,
        createtime=to_wire(job.created_at, timezone),
        updatetime=to_wire(job.updated_at, timezone),
    )
    if job.result:
        view.result = job.result
    return view


async def states(bus: Bus, settings: ApiSettings, ids: list[str]) -> list[TaskState]:
    """Each job's state, in the order asked; an unknown id answers code 500."""

    async def one(job_id: str) -> TaskState:
        job = await reads.job(bus, job_id)
        if job is None:
            return TaskState(code=500, jobid=job_id, message=texts.job_not_found(job_id))
        return task_state(job, settings.platform.timezone)

    return await gather_bounded([one(job_id) for job_id in ids])


async def log(bus: Bus, settings: ApiSettings, job_id: str) -> JobLog:
    """The job's log lines, oldest first; an unknown job is refused as `/task/status` names it."""
    if await reads.job(bus, job_id) is None:
        raise texts.job_unknown(job_id)
    timezone = settings.platform.timezone
    lines = [
        JobLogLine(
            time=to_wire(line.time, timezone), service=line.service, level=line.level, message=line.message
        )
        for line in await joblog.read(bus, job_id)
    ]
    return JobLog(jobid=job_id, lines=lines)
