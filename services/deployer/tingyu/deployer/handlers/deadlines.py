"""Job timers: a dispatched job whose machine has not converged by its deadline fails with that reason.

A change of spec that times out is rolled back to the last spec that ran, like one that failed.
"""

from __future__ import annotations

from nats.aio.msg import Msg

from tingyu.common import subjects, timefmt
from tingyu.common.bus import Bus, Retry, kv_get
from tingyu.common.models.containers import DesiredContainer, NodeDesired
from tingyu.common.models.jobs import Job, JobDeadline, JobState
from tingyu.deployer.desired import rollback_note
from tingyu.deployer.jobs import Jobs
from tingyu.deployer.transactions import roll_back_change


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
        reason = f"timed out: {where}{goal} in time"
        entry = await self._deployment(job)
        note = rollback_note(entry) if entry is not None and entry.job_id == job.job_id else ""
        await self.jobs.move(job.job_id, JobState.FAILED, reason + note)
        if note:
            await roll_back_change(self.bus, job.node_uuid, job.deploymentname, job.job_id, reason)

    async def _deployment(self, job: Job) -> DesiredContainer | None:
        if not job.node_uuid or not job.deploymentname:
            return None
        doc, _rev = await kv_get(await self.bus.kv(subjects.DESIRED), job.node_uuid, NodeDesired)
        return doc.containers.get(job.deploymentname) if doc else None
