"""Job timers: a dispatched job whose machine has not converged by its deadline fails with that reason."""

from __future__ import annotations

from nats.aio.msg import Msg

from tingyu.common import subjects, timefmt
from tingyu.common.bus import Bus, Retry, kv_get
from tingyu.common.models.jobs import Job, JobDeadline, JobState
from tingyu.deployer.jobs import Jobs


class Deadlines:
    """Handles `ty.jobdeadline.*`: early messages come back (nak with delay) when their time is due."""

    def __init__(self, bus: Bus, jobs: Jobs) -> None:
        self.bus = bus
        self.jobs = jobs

    async def handle(self, timer: JobDeadline, _: Msg) -> None:
        if self.jobs.is_finished(timer.job_id):
            return
        remaining = timer.deadline - timefmt.now()
        if remaining > 0:
            raise Retry("not due", delay=remaining)
        job, _rev = await kv_get(await self.bus.kv(subjects.JOBS), timer.job_id, Job)
        if job is None or job.state.final:
            return
        where = f"machine {job.node_uuid}" if job.node_uuid else "its worker"
        goal = f" did not reach {job.goal}" if job.goal else " did not finish"
        await self.jobs.move(job.job_id, JobState.FAILED, f"timed out: {where}{goal} in time")
