"""Rollout commands: create or extend the rollout record, then ack. The leader loop does the work.

Handling a command twice has one effect: its job id is recorded in the rollout it joined.
"""

from __future__ import annotations

import logging

from nats.aio.msg import Msg

from tingyu.common import subjects, timefmt
from tingyu.common.bus import Bus
from tingyu.common.jobs import JobStore
from tingyu.common.models.rollouts import Rollout, RolloutCommand, RolloutStatus, rollout_key
from tingyu.deployer.rollouts.candidates import candidates
from tingyu.deployer.rollouts.plan import join, progress

log = logging.getLogger(__name__)


class RolloutCommands:
    """Handles `ty.cmd.rollout.*`."""

    def __init__(self, bus: Bus, jobs: JobStore) -> None:
        self.bus = bus
        self.jobs = jobs
        self.rollouts = bus.store(subjects.ROLLOUTS)

    async def handle(self, command: RolloutCommand, _: Msg) -> None:
        job = await self.jobs.get(command.job_id)
        if job is not None and job.state.final:
            return
        key = rollout_key(command.area, command.operator, command.image)
        found = await candidates(self.bus, command.area, command.operator, command.image)
        replaced: Rollout | None = None

        def change(current: Rollout | None) -> Rollout | None:
            nonlocal replaced
            after, replaced = join(current, command, found, timefmt.now())
            return after

        await self.rollouts.mutate(key, change)
        if replaced is not None:
            await self.supersede(replaced, command.job_id)

    async def supersede(self, old: Rollout, by: str) -> None:
        """The old run's jobs fail; its upgrades already in flight finish on their own."""
        old.status = RolloutStatus.SUPERSEDED
        message = f"superseded by job {by}"
        log.info("rollout %s run %s %s", old.rollout_id, old.run, message)
        for job_id in old.jobs:
            await self.jobs.fail(job_id, message, result=progress(old))
