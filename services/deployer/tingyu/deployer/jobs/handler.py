"""The jobs slice's handlers: job timers, and the jobs of messages a consumer gave up on.

A dispatched job whose machine has not converged by its deadline fails with that reason. Before it,
a job no report has moved on is looked at again at doubling intervals and its machine nudged again:
a nudge is core NATS, and one lost would otherwise leave the job to the agent's next full read. A command
or timer that is dead-lettered fails its job with the dead letter's reason, so no job is left queued
or dispatched forever. A change of spec that times out is rolled back to the last spec that ran,
like one that failed.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from nats.aio.msg import Msg

from tingyu.common import timefmt
from tingyu.common.bus import Bus, Retry
from tingyu.common.desired import DesiredStore
from tingyu.common.jobs import JobStore
from tingyu.common.models.containers import DesiredContainer
from tingyu.common.models.jobs import Command, Job, JobDeadline
from tingyu.deployer.containers.handler import Transactions, nudge
from tingyu.deployer.containers.rules import rollback_note
from tingyu.deployer.jobs.rules import due_in, next_look, nudge_due, overdue, unanswered

log = logging.getLogger(__name__)


class Deadlines:
    """Handles `ty.jobdeadline.*`: early messages come back (nak with delay) when their time is due."""

    def __init__(self, bus: Bus, jobs: JobStore, nudge_again_s: float = 0.0) -> None:
        self.bus = bus
        self.jobs = jobs
        self.nudge_again_s = nudge_again_s
        self.desired = DesiredStore(bus)
        self.transactions = Transactions(bus)

    async def handle(self, timer: JobDeadline, _: Msg) -> None:
        if self.jobs.is_finished(timer.job_id):
            return
        now = timefmt.now()
        if due_in(timer, now) > 0:
            if nudge_due(timer, now, self.nudge_again_s):  # the first look, at dispatch, reads nothing
                job = await self.jobs.get(timer.job_id)
                if job is None or job.state.final:
                    return  # nothing left to time
                if unanswered(job):
                    await self.nudge_again(job)
            raise Retry("not due", delay=next_look(timer, now, self.nudge_again_s))
        job = await self.jobs.get(timer.job_id)
        reason = overdue(job)
        if job is None or not reason:
            return
        note = rollback_note(await self.deployment(job), job.job_id)
        await self.jobs.fail(job.job_id, reason + note)
        if note:
            await self.transactions.roll_back(job.node_uuid, job.deploymentname, job.job_id, reason)

    async def nudge_again(self, job: Job) -> None:
        """Nudge the job's machine again with the revision its deployment holds for the job."""
        entry, revision = await self.desired.entry(job.node_uuid, job.deploymentname)
        if entry is not None and entry.job_id == job.job_id:
            said = "job %s: no report yet; nudging %s again"
            log.info(said, job.job_id, job.node_uuid, extra={"job_id": job.job_id})
            await nudge(self.bus, job.node_uuid, job.deploymentname, revision)

    async def deployment(self, job: Job) -> DesiredContainer | None:
        """The deployment a container job changes, as the deployer wants it now."""
        if not job.node_uuid or not job.deploymentname:
            return None
        return await self.desired.get(job.node_uuid, job.deploymentname)


def fail_job(jobs: JobStore) -> Callable[[Command | JobDeadline | None, str, str], Awaitable[None]]:
    """A consumer's `on_dead`: the dead message's job fails with the reason. A command that did not
    decode still names its job: its message id is the job id."""

    async def on_dead(item: Command | JobDeadline | None, reason: str, msg_id: str) -> None:
        job_id = item.job_id if item is not None else msg_id
        if not job_id:
            return
        log.warning("job %s failed: its message was dead-lettered: %s", job_id, reason)
        await jobs.fail(job_id, reason)

    return on_dead
