"""Agents' reports: store the observed state and complete the jobs whose revision was applied."""

from __future__ import annotations

import logging

from nats.aio.msg import Msg

from tingyu.common import subjects
from tingyu.common.bus import Bus, kv_delete, kv_get, kv_mutate
from tingyu.common.models.containers import (
    DesiredContainer,
    DesiredState,
    NameClaim,
    NodeDesired,
    NodeObserved,
    ObservedContainer,
    PodPhase,
)
from tingyu.common.models.jobs import JobState
from tingyu.deployer.desired import GOALS, rollback_note
from tingyu.deployer.jobs import Jobs
from tingyu.deployer.transactions import commit_change, roll_back_change

log = logging.getLogger(__name__)


class Observed:
    """Handles `ty.evt.observed.*`."""

    def __init__(self, bus: Bus, jobs: Jobs) -> None:
        self.bus = bus
        self.jobs = jobs

    async def handle(self, report: NodeObserved, _: Msg) -> None:
        await self.store(report)
        doc, _rev = await kv_get(await self.bus.kv(subjects.DESIRED), report.node_uuid, NodeDesired)
        if doc is None:
            return
        for name, entry in doc.containers.items():
            seen = report.containers.get(name)
            if seen is not None and seen.job_id == entry.job_id and seen.revision == entry.revision:
                await self.judge(report.node_uuid, entry, seen)

    async def store(self, report: NodeObserved) -> None:
        def newer(current: NodeObserved | None) -> NodeObserved | None:
            if current is not None and current.reported_at > report.reported_at:
                return None
            return report

        await kv_mutate(await self.bus.kv(subjects.OBSERVED_STATE), report.node_uuid, NodeObserved, newer)

    async def judge(self, node_uuid: str, entry: DesiredContainer, seen: ObservedContainer) -> None:
        """The agent applied this revision: the job succeeded, failed, or is still running."""
        if self.jobs.is_finished(entry.job_id):
            if entry.state == DesiredState.ABSENT and seen.phase == PodPhase.DELETED:
                await self.forget(node_uuid, entry)
            elif entry.fallback is not None and seen.phase == PodPhase.FAILED:
                # The job failed but the rollback was not written (a crash in between): write it now.
                await roll_back_change(self.bus, node_uuid, entry.name, entry.job_id, seen.message)
            return
        goal = GOALS[entry.state]
        if seen.phase == goal:
            if entry.fallback is not None:
                await commit_change(self.bus, node_uuid, entry.name, entry.job_id)
            await self.jobs.move(entry.job_id, JobState.SUCCEEDED, "success")
            if goal == PodPhase.DELETED:
                await self.forget(node_uuid, entry)
        elif seen.phase == PodPhase.FAILED:
            reason = seen.message or "the container failed"
            await self.jobs.move(entry.job_id, JobState.FAILED, reason + rollback_note(entry))
            await roll_back_change(self.bus, node_uuid, entry.name, entry.job_id, reason)
        else:
            await self.jobs.move(entry.job_id, JobState.RUNNING)

    async def forget(self, node_uuid: str, entry: DesiredContainer) -> None:
        """A deleted deployment leaves the desired state, then frees its name."""

        def drop(doc: NodeDesired | None) -> NodeDesired | None:
            current = doc.containers.get(entry.name) if doc else None
            if doc is None or current is None or current.job_id != entry.job_id:
                return None
            del doc.containers[entry.name]
            return doc

        await kv_mutate(await self.bus.kv(subjects.DESIRED), node_uuid, NodeDesired, drop)
        names = await self.bus.kv(subjects.NAMES)
        claim, _ = await kv_get(names, entry.name, NameClaim)
        if claim is not None and claim.node_uuid == node_uuid:
            await kv_delete(names, entry.name)
        log.info("deployment %s deleted from %s", entry.name, node_uuid)
