"""Which containers a rollout targets, how a call joins it, and where it stands. Pure: no I/O."""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from tingyu.common.models.rollouts import (
    MemberState,
    Rollout,
    RolloutCommand,
    RolloutMember,
    RolloutStatus,
    rollout_key,
)

FAILURES_NAMED = 10  # how many failed containers a job message names


@dataclass(frozen=True)
class Candidate:
    """A deployment running the rollout's image on a machine of its area and operator."""

    name: str
    node_uuid: str
    imageversion: str


def target_count(total: int, percent: float) -> int:
    """ceil(total x percent / 100), computed exactly: 50 % of 3 is 2, 1 % of 1 is 1, 0 % is 0."""
    return math.ceil(Fraction(total) * Fraction(str(percent)) / 100)


def member_job_id(run: str, name: str, version: str) -> str:
    """The upgrade job of one member: the same every time, so a re-issue after a crash is deduplicated."""
    return hashlib.sha256(f"{run}/{name}/{version}".encode()).hexdigest()[:32]


def _order(rollout_id: str, name: str) -> str:
    # A stable shuffle: the same containers come first for every percentage and every run.
    return hashlib.sha256(f"{rollout_id}/{name}".encode()).hexdigest()


def select(rollout: Rollout, candidates: list[Candidate]) -> None:
    """Add members until `target` are selected; existing members stay, so a higher percent only appends.

    Containers already at the target version count as done (members without a job). Members whose
    deployment is gone (deleted, or no longer of this image, area and operator) drop out; a member
    counted done whose container is no longer at the target version (re-created, rolled back) is
    pending again.
    """
    by_name = {c.name: c for c in candidates}
    version = rollout.patch.imageversion
    for name in [n for n in rollout.members if n not in by_name]:
        del rollout.members[name]
    for name, member in rollout.members.items():
        if member.state == MemberState.UPDATED and by_name[name].imageversion != version:
            rollout.members[name] = RolloutMember(name=name, node_uuid=by_name[name].node_uuid)
    rollout.total = len(candidates)
    rollout.target = target_count(rollout.total, rollout.percent)
    ordered = sorted(candidates, key=lambda c: _order(rollout.rollout_id, c.name))
    for candidate in ordered:
        if candidate.name not in rollout.members and candidate.imageversion == version:
            rollout.members[candidate.name] = RolloutMember(
                name=candidate.name,
                node_uuid=candidate.node_uuid,
                state=MemberState.UPDATED,
                message="already at the target version",
            )
    for candidate in ordered:
        if len(rollout.members) >= rollout.target:
            break
        if candidate.name not in rollout.members:
            member = RolloutMember(name=candidate.name, node_uuid=candidate.node_uuid)
            rollout.members[candidate.name] = member


def extends(current: Rollout, command: RolloutCommand) -> bool:
    """Same target version and a run still going (running or paused): the call joins that run.

    Any other call starts a new run, planned from the fleet as it is now: after an abort, after a
    run finished (containers created since are targeted, those deleted are not), or for a new version.
    """
    return current.patch == command.patch and not current.status.final


def join(
    current: Rollout | None, command: RolloutCommand, found: list[Candidate], now: float
) -> tuple[Rollout | None, Rollout | None]:
    """The record after a rollout call, and the unfinished run it replaces (if any).

    The call extends the current run (same target version, still running or paused: a paused run
    stays paused) or starts a new run; (None, None) when the call was recorded already, so handling
    it twice has one effect.
    """
    if current is not None and command.job_id in current.jobs:
        return None, None
    if current is not None and extends(current, command):
        # A lower percent never undoes or drops anything: the run keeps its larger target.
        current.percent = max(current.percent, command.percent)
        current.jobs.append(command.job_id)
        current.message = ""
        current.updated_at = now
        select(current, found)
        return current, None
    replaced = current if current is not None and not current.status.final else None
    fresh = Rollout(
        rollout_id=rollout_key(command.area, command.operator, command.image),
        run=command.job_id,
        area=command.area,
        operator=command.operator,
        image=command.image,
        patch=command.patch,
        percent=command.percent,
        jobs=[command.job_id],
        prepull=command.prepull,
        created_at=now,
        updated_at=now,
    )
    select(fresh, found)
    return fresh, replaced


def prepull_job_id(run: str) -> str:
    """The pre-pull job of a run (`prepull: true`): the same every tick, so it is submitted once."""
    return hashlib.sha256(f"{run}/prepull".encode()).hexdigest()[:32]


def prepull_targets(rollout: Rollout) -> list[str]:
    """The machines of the members still to be upgraded, each once."""
    pending = (m.node_uuid for m in rollout.members.values() if m.state == MemberState.PENDING)
    return sorted(set(pending))


def merge(rollout: Rollout, updates: dict[str, RolloutMember]) -> None:
    """Apply member changes; members added meanwhile (an extension) are kept."""
    for name, member in updates.items():
        if name in rollout.members:
            rollout.members[name] = member


def _named(members: list[RolloutMember]) -> str:
    named = ", ".join(f"{m.name} ({m.message})" if m.message else m.name for m in members[:FAILURES_NAMED])
    more = len(members) - FAILURES_NAMED
    return named + (f" and {more} more" if more > 0 else "")


def settle(rollout: Rollout, threshold: float, min_executed: int) -> None:
    """Decide the status of a running rollout: abort past the failure threshold, finish when all are done."""
    if rollout.status != RolloutStatus.RUNNING:
        return
    members = list(rollout.members.values())
    failed = [m for m in members if m.state == MemberState.FAILED]
    executed = [m for m in members if m.job_id and m.state in (MemberState.UPDATED, MemberState.FAILED)]
    if len(executed) >= min_executed and len(failed) > threshold * len(executed):
        rollout.status = RolloutStatus.ABORTED
        rollout.message = (
            f"rollout aborted: {len(failed)} of {len(executed)} upgrades failed "
            f"(threshold {threshold:.0%}): {_named(failed)}"
        )
    elif all(m.state in (MemberState.UPDATED, MemberState.FAILED) for m in members):
        if failed:
            rollout.status = RolloutStatus.FAILED
            rollout.message = f"{len(failed)} of {len(members)} containers failed: {_named(failed)}"
        else:
            rollout.status = RolloutStatus.SUCCEEDED
            rollout.message = "success"


def progress(rollout: Rollout, ready: set[str] | None = None) -> dict[str, Any]:
    """The `result` of the rollout's jobs in `/task/status`; `ready` = Ready machines (None: unknown)."""
    states = Counter(m.state for m in rollout.members.values())
    waiting = sum(
        1
        for m in rollout.members.values()
        if m.state == MemberState.PENDING and ready is not None and m.node_uuid not in ready
    )
    return {
        "rolloutid": rollout.rollout_id,
        "image": rollout.image,
        "imageversion": rollout.patch.imageversion,
        "percent": rollout.percent,
        "total": rollout.total,
        "target": rollout.target,
        "updated": states[MemberState.UPDATED],
        "failed": states[MemberState.FAILED],
        "inflight": states[MemberState.ISSUED],
        "pending": states[MemberState.PENDING] - waiting,
        "waiting_notready": waiting,
        "status": rollout.status.value,
        **({"prepulljob": prepull_job_id(rollout.run)} if rollout.prepull else {}),
    }
