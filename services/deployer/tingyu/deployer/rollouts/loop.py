"""The rollout loop: one leader replica (the `rollouts` lease) advances every running rollout, one tick
a second.

Per tick and rollout: finished upgrade jobs become updated/failed members, the failure
threshold is checked, and pending members on Ready machines are issued while fewer than
`max_unavailable` upgrades are in flight. A member whose container has another job in flight (an
operator's create or update) waits for it to end: a rollout never overtakes a command, which would
fail it as superseded. Everything lives in `ty_rollouts`, so a new
leader (or a restarted one) carries on where the last one stopped.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

from tingyu.common import metrics, subjects, timefmt
from tingyu.common.bus import Bus
from tingyu.common.desired import DesiredStore
from tingyu.common.jobs import JobStore
from tingyu.common.models.containers import ContainerCommand, ContainerOp
from tingyu.common.models.jobs import JobState
from tingyu.common.models.nodes import NodeStatus
from tingyu.common.models.remote import PrepullCommand
from tingyu.common.models.rollouts import MemberState, Rollout, RolloutMember, RolloutStatus
from tingyu.deployer.config import DeployerSettings
from tingyu.deployer.rollouts.plan import (
    member_job_id,
    merge,
    prepull_job_id,
    prepull_targets,
    progress,
    settle,
)

log = logging.getLogger(__name__)

JOB_STATES = {
    RolloutStatus.RUNNING: JobState.RUNNING,
    RolloutStatus.PAUSED: JobState.RUNNING,
    RolloutStatus.SUCCEEDED: JobState.SUCCEEDED,
}


class RolloutLoop:
    """Advances running rollouts; `tick` runs while this replica holds the `rollouts` lease."""

    def __init__(self, bus: Bus, jobs: JobStore, settings: DeployerSettings) -> None:
        self.jobs = jobs
        self.settings = settings
        self.rollouts = bus.store(subjects.ROLLOUTS)
        self.nodes = bus.store(subjects.NODES)
        self.desired = DesiredStore(bus)
        self.reported: dict[str, dict[str, Any]] = {}  # job id -> last result written, to skip rewrites
        self.settled_runs: set[str] = set()  # runs whose jobs this replica saw final

    async def tick(self) -> None:
        rollouts = await self.rollouts.values()
        # A paused rollout still records the upgrades that finish; it only issues none.
        running = [r for r in rollouts if not r.status.final]
        metrics.ROLLOUTS_ACTIVE.set(len(running))
        # Runs that ended outside this loop (aborted by request) still owe their jobs a final state.
        unsettled = [r for r in rollouts if r.status.final and r.run not in self.settled_runs]
        if not running and not unsettled:
            return
        nodes = await self.nodes.values()
        ready = {n.facts.uuid for n in nodes if n.status == NodeStatus.READY}
        for rollout in running:
            await self.advance(rollout, ready)
        for rollout in unsettled:
            await self.report(rollout, ready)
            self.settled_runs.add(rollout.run)

    def _settled(self, rollout: Rollout, updates: dict[str, RolloutMember]) -> Rollout:
        after = rollout.model_copy(deep=True)
        merge(after, updates)
        settle(after, self.settings.rollout_failure_threshold, self.settings.rollout_min_executed)
        return after

    async def advance(self, rollout: Rollout, ready: set[str]) -> None:
        updates = await self.finished_members(rollout)
        preview = self._settled(rollout, updates)
        if preview.status == RolloutStatus.RUNNING and not await self.prepulling(preview):
            updates.update(await self.issue(preview, ready))
            preview = self._settled(rollout, updates)
        if preview.status.final:
            # Jobs first: a crash before the record is written repeats this tick, not skips it.
            await self.report(preview, ready)

        def change(current: Rollout | None) -> Rollout | None:
            if current is None or current.run != rollout.run or current.status.final:
                return None
            status = current.status
            merge(current, updates)
            settle(current, self.settings.rollout_failure_threshold, self.settings.rollout_min_executed)
            if not updates and current.status == status:
                return None
            current.updated_at = timefmt.now()
            return current

        stored = await self.rollouts.mutate(rollout.rollout_id, change)
        if stored is not None and stored.run == rollout.run:
            if stored.status != preview.status and stored.status.final:
                log.info("rollout %s %s: %s", stored.rollout_id, stored.status.value, stored.message)
            await self.report(stored, ready)

    async def finished_members(self, rollout: Rollout) -> dict[str, RolloutMember]:
        """Issued members whose upgrade job is final."""
        updates: dict[str, RolloutMember] = {}
        for member in rollout.members.values():
            if member.state != MemberState.ISSUED:
                continue
            job = await self.jobs.get(member.job_id)
            if job is None or not job.state.final:
                continue
            state = MemberState.UPDATED if job.state == JobState.SUCCEEDED else MemberState.FAILED
            updates[member.name] = member.model_copy(update={"state": state, "message": job.message})
        return updates

    async def prepulling(self, rollout: Rollout) -> bool:
        """With `prepull`, True until the run's pre-pull job (submitted here once) has finished."""
        if not rollout.prepull:
            return False
        job_id = prepull_job_id(rollout.run)
        job = await self.jobs.get(job_id)
        if job is not None:
            return not job.state.final
        uuids = prepull_targets(rollout)
        if not uuids:
            return False
        now = timefmt.now()
        patch = rollout.patch
        command = PrepullCommand(
            job_id=job_id,
            image=patch.image,
            imageversion=patch.imageversion,
            image_ref=patch.image_ref,
            uuids=uuids,
            deadline=now + self.settings.rollout_prepull_deadline_s,
            issued_at=now,
        )
        await self.jobs.submit(command)
        log.info(
            "rollout %s: pre-pulling %s onto %d machines first",
            rollout.rollout_id,
            patch.image_ref,
            len(uuids),
        )
        return True

    async def issue(self, rollout: Rollout, ready: set[str]) -> dict[str, RolloutMember]:
        """Issue pending members on Ready machines, in rollout order, up to `max_unavailable` in flight."""
        inflight = sum(1 for m in rollout.members.values() if m.state == MemberState.ISSUED)
        issued: dict[str, RolloutMember] = {}
        for member in rollout.members.values():
            if inflight >= self.settings.rollout_max_unavailable:
                break
            if member.state != MemberState.PENDING or member.node_uuid not in ready:
                continue  # a NotReady machine's members wait until it is Ready again
            job_id = member_job_id(rollout.run, member.name, rollout.patch.imageversion)
            if await self.busy(member, job_id):
                continue
            command = ContainerCommand(
                job_id=job_id,
                op=ContainerOp.UPGRADE,
                name=member.name,
                node_uuid=member.node_uuid,
                patch=rollout.patch,
                issued_at=timefmt.now(),
                rollout_id=rollout.rollout_id,
            )
            await self.jobs.submit(command)
            issued[member.name] = member.model_copy(update={"state": MemberState.ISSUED, "job_id": job_id})
            inflight += 1
        return issued

    async def busy(self, member: RolloutMember, job_id: str) -> bool:
        """True while another job on the member's container is in flight (its own job is not)."""
        entry = await self.desired.get(member.node_uuid, member.name)
        if entry is None or entry.job_id in ("", job_id) or self.jobs.is_finished(entry.job_id):
            return False
        job = await self.jobs.get(entry.job_id)
        return job is not None and not job.state.final

    async def report(self, rollout: Rollout, ready: set[str]) -> None:
        """Write the rollout's progress into every open job of its run."""
        result = progress(rollout, ready)
        show_progress(rollout.rollout_id, result, rollout.status.final)
        state = JOB_STATES.get(rollout.status, JobState.FAILED)
        message = "" if state == JobState.RUNNING else rollout.message
        for job_id in rollout.jobs:
            if self.jobs.is_finished(job_id) or self.reported.get(job_id) == result:
                continue
            await self.jobs.move(job_id, state, message, result=result)
            if state.final:
                self.reported.pop(job_id, None)
            else:
                self.reported[job_id] = result


PROGRESS_FIELDS = ("target", "updated", "inflight", "failed", "pending", "waiting_notready")


def show_progress(rollout_id: str, result: dict[str, Any], final: bool) -> None:
    """The rollout's progress as gauges while it runs; a finished rollout's series go away."""
    for field in PROGRESS_FIELDS:
        if final:
            with contextlib.suppress(KeyError):
                metrics.ROLLOUT_MACHINES.remove(rollout_id, field)
        else:
            metrics.ROLLOUT_MACHINES.labels(rollout_id, field).set(result[field])
