"""Rollout commands: create or extend the rollout record, then ack. The leader loop does the work.

Handling a command twice has one effect: its job id is recorded in the rollout it joined.
"""

from __future__ import annotations

import logging

from nats.aio.msg import Msg

from tingyu.common import subjects, timefmt
from tingyu.common.bus import Bus, kv_get, kv_mutate
from tingyu.common.models.jobs import Job, JobState
from tingyu.common.models.rollouts import Rollout, RolloutCommand, RolloutStatus, rollout_key
from tingyu.deployer.jobs import Jobs
from tingyu.deployer.rollouts.candidates import candidates
from tingyu.deployer.rollouts.plan import progress, select

log = logging.getLogger(__name__)


def extends(current: Rollout, command: RolloutCommand) -> bool:
    """Same target version and a run still going (running or paused): the call joins that run.

    Any other call starts a new run, planned from the fleet as it is now: after an abort, after a
    run finished (containers created since are targeted, those deleted are not), or for a new version.
    """
    return current.patch == command.patch and not current.status.final


class RolloutCommands:
    """Handles `ty.cmd.rollout.*`."""

    def __init__(self, bus: Bus, jobs: Jobs) -> None:
        self.bus = bus
        self.jobs = jobs

    async def handle(self, command: RolloutCommand, _: Msg) -> None:
        job, _rev = await kv_get(await self.bus.kv(subjects.JOBS), command.job_id, Job)
        if job is not None and job.state.final:
            return
        key = rollout_key(command.area, command.operator, command.image)
        found = await candidates(self.bus, command.area, command.operator, command.image)
        replaced: Rollout | None = None

        def change(current: Rollout | None) -> Rollout | None:
            nonlocal replaced
            replaced = None
            now = timefmt.now()
            if current is not None and command.job_id in current.jobs:
                return None
            if current is not None and extends(current, command):
                # A lower percent never undoes or drops anything: the run keeps its larger target.
                current.percent = max(current.percent, command.percent)
                current.jobs.append(command.job_id)
                current.message = ""
                current.updated_at = now
                select(current, found)
                return current
            if current is not None and not current.status.final:
                replaced = current
            fresh = Rollout(
                rollout_id=key,
                run=command.job_id,
                area=command.area,
                operator=command.operator,
                image=command.image,
                patch=command.patch,
                percent=command.percent,
                jobs=[command.job_id],
                created_at=now,
                updated_at=now,
            )
            select(fresh, found)
            return fresh

        await kv_mutate(await self.bus.kv(subjects.ROLLOUTS), key, Rollout, change)
        if replaced is not None:
            await self.supersede(replaced, command.job_id)

    async def supersede(self, old: Rollout, by: str) -> None:
        """The old run's jobs fail; its upgrades already in flight finish on their own."""
        old.status = RolloutStatus.SUPERSEDED
        message = f"superseded by job {by}"
        log.info("rollout %s run %s %s", old.rollout_id, old.run, message)
        for job_id in old.jobs:
            await self.jobs.move(job_id, JobState.FAILED, message, result=progress(old))
