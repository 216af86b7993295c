"""Container commands: claim the name, write desired state, dispatch the job, nudge the agent.

Each step is idempotent, so a command redelivered after a crash at any point has one effect.
"""

from __future__ import annotations

import logging

from nats.aio.msg import Msg

from tingyu.common import subjects, timefmt
from tingyu.common.bus import Bus, kv_get, kv_mutate
from tingyu.common.claims import claim_name
from tingyu.common.models.containers import ContainerCommand, ContainerOp, NodeDesired
from tingyu.common.models.jobs import Job, JobDeadline, JobState
from tingyu.common.models.nodes import NodeRecord
from tingyu.deployer.desired import Outcome, apply
from tingyu.deployer.jobs import Jobs

log = logging.getLogger(__name__)


class Commands:
    """Handles `ty.cmd.container.*`."""

    def __init__(self, bus: Bus, jobs: Jobs, job_timeout_s: float) -> None:
        self.bus = bus
        self.jobs = jobs
        self.job_timeout_s = job_timeout_s

    async def handle(self, command: ContainerCommand, _: Msg) -> None:
        job, _rev = await kv_get(await self.bus.kv(subjects.JOBS), command.job_id, Job)
        if job is not None and job.state.final:
            return
        node, _rev = await kv_get(await self.bus.kv(subjects.NODES), command.node_uuid, NodeRecord)
        if node is None:
            await self.jobs.move(
                command.job_id, JobState.FAILED, f"machine {command.node_uuid} is not registered"
            )
            return
        if command.op == ContainerOp.CREATE:
            refusal = await claim_name(self.bus, command.name, command.node_uuid, command.job_id)
            if refusal:
                await self.jobs.move(command.job_id, JobState.FAILED, refusal)
                return
        outcome = await self.write_desired(command)
        if outcome.error:
            await self.jobs.move(command.job_id, JobState.FAILED, outcome.error)
            return
        await self.jobs.move(
            command.job_id,
            JobState.DISPATCHED,
            revision=outcome.revision,
            goal=outcome.goal.value,
            node_uuid=command.node_uuid,
        )
        if outcome.superseded and outcome.superseded != command.job_id:
            await self.jobs.move(outcome.superseded, JobState.FAILED, f"superseded by job {command.job_id}")
        deadline = JobDeadline(job_id=command.job_id, deadline=command.issued_at + self.job_timeout_s)
        await self.bus.publish(
            subjects.job_deadline(command.job_id), deadline, msg_id=f"deadline-{command.job_id}"
        )
        await self.bus.nc.publish(subjects.agent_nudge(command.node_uuid), b"")

    async def write_desired(self, command: ContainerCommand) -> Outcome:
        outcome = Outcome()

        def change(doc: NodeDesired | None) -> NodeDesired | None:
            nonlocal outcome
            doc = doc or NodeDesired(node_uuid=command.node_uuid)
            outcome = apply(doc, command, timefmt.now())
            return doc if outcome.changed and not outcome.error else None

        await kv_mutate(await self.bus.kv(subjects.DESIRED), command.node_uuid, NodeDesired, change)
        if outcome.error:
            log.info("job %s (%s %s) refused: %s", command.job_id, command.op, command.name, outcome.error)
        return outcome
