"""Canary rollouts (contract §二 updateByInherit): a share of an area's containers moves to a new version.

Extensions: a rollout is read by (area, operator, image), and paused, resumed or aborted. A control
is a compare-and-set on the rollout's record against the deployer's loop, which issues nothing for a
paused run and gives the jobs of an aborted one their final state.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from tingyu.api import texts
from tingyu.api.auth import Principal
from tingyu.api.config import ApiSettings
from tingyu.api.images_ref import UnknownImage, resolve
from tingyu.api.params import RolloutTarget
from tingyu.api.schemas.rollouts import RolloutMemberView, RolloutView
from tingyu.common import subjects, timefmt
from tingyu.common.bus import Bus
from tingyu.common.errors import InvalidOperator
from tingyu.common.jobs import JobStore, job_id
from tingyu.common.models.containers import ImagePatch
from tingyu.common.models.nodes import OPERATORS
from tingyu.common.models.rollouts import MemberState, Rollout, RolloutCommand, RolloutStatus, rollout_key


def text(body: dict[str, Any], field: str) -> str:
    value = body.get(field)
    if value is None or value == "":
        raise texts.required(field)
    if not isinstance(value, str):
        raise texts.not_allowed(f"{field} must be a string")
    return value.strip()


async def image_of(bus: Bus, settings: ApiSettings, body: dict[str, Any]) -> ImagePatch:
    """The body's `image` and `imageversion`, resolved as a create resolves them (catalog name or
    full reference, the edge policy's registries)."""
    image = text(body, "image")
    version = body.get("imageversion") or ""
    if not isinstance(version, str):
        raise texts.not_allowed("imageversion must be a string")
    try:
        return await resolve(bus, settings.platform.registry, image, version.strip())
    except UnknownImage as exc:
        raise texts.not_allowed(str(exc)) from exc


def percent(body: dict[str, Any]) -> float:
    value = body.get("percent")
    if value is None:
        raise texts.required("percent")
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 100:
        raise texts.not_allowed(f"percent must be a number from 0 to 100, not {value!r}")
    return float(value)


async def start(bus: Bus, settings: ApiSettings, body: dict[str, Any], *, caller: Principal) -> str:
    """Check the request (the operator first, whatever else is wrong: the contract) and submit the
    rollout's job; answers its id."""
    if body.get("operator") not in OPERATORS:
        raise InvalidOperator()
    share = percent(body)
    area = text(body, "area")
    if not caller.covers(area):
        raise texts.area_forbidden("the rollout", area, caller.areas)
    patch = await image_of(bus, settings, body)
    prepull = body.get("prepull", False)
    if not isinstance(prepull, bool):
        raise texts.not_allowed("prepull must be true or false")
    command = RolloutCommand(
        job_id=job_id(),
        area=area,
        operator=body["operator"],
        image=text(body, "image"),
        patch=patch,
        percent=share,
        issued_at=timefmt.now(),
        prepull=prepull,
    )
    await JobStore(bus).submit(command)
    return command.job_id


# --- reading and steering a rollout (extensions) ------------------------------------------------------


def rollout_view(rollout: Rollout, timezone: str) -> RolloutView:
    """A rollout's progress and members, in rollout order."""
    counts = Counter(member.state for member in rollout.members.values())
    return RolloutView(
        rolloutid=rollout.rollout_id,
        area=rollout.area,
        operator=rollout.operator,
        image=rollout.image,
        imageversion=rollout.patch.imageversion,
        percent=rollout.percent,
        status=rollout.status.value,
        message=rollout.message,
        total=rollout.total,
        target=rollout.target,
        updated=counts[MemberState.UPDATED],
        failed=counts[MemberState.FAILED],
        inflight=counts[MemberState.ISSUED],
        pending=counts[MemberState.PENDING],
        jobids=rollout.jobs,
        createtime=timefmt.to_wire(rollout.created_at, timezone),
        updatetime=timefmt.to_wire(rollout.updated_at, timezone),
        members=[
            RolloutMemberView(
                deploymentname=m.name,
                uuid=m.node_uuid,
                state=m.state.value,
                jobid=m.job_id,
                message=m.message,
            )
            for m in rollout.members.values()
        ],
    )


def key_of(target: RolloutTarget) -> str:
    return rollout_key(target.area, target.operator, target.image)


def found(rollout: Rollout | None) -> Rollout:
    """The rollout's record; TY0033 when none was started for that image, area and operator."""
    if rollout is None:
        raise texts.no_rollout()
    return rollout


async def read(bus: Bus, settings: ApiSettings, target: RolloutTarget) -> RolloutView:
    """The rollout's last run."""
    rollout = found(await bus.store(subjects.ROLLOUTS).get(key_of(target)))
    return rollout_view(rollout, settings.platform.timezone)


# Which statuses each control moves a run from, and to.
CONTROLS = {
    "pause": ({RolloutStatus.RUNNING, RolloutStatus.PAUSED}, RolloutStatus.PAUSED),
    "resume": ({RolloutStatus.RUNNING, RolloutStatus.PAUSED}, RolloutStatus.RUNNING),
    "abort": ({RolloutStatus.RUNNING, RolloutStatus.PAUSED, RolloutStatus.ABORTED}, RolloutStatus.ABORTED),
}


def steer(current: Rollout, action: str, now: float) -> bool:
    """Move the run as `action` asks, in place; False when there is nothing to change. Raises when
    the run has ended (a control never reopens a run: a new updateByInherit call starts a new one)."""
    sources, goal = CONTROLS[action]
    if current.status not in sources:
        raise texts.rollout_ended(current.status.value, action)
    if current.status == goal:
        return False
    current.status = goal
    current.message = "rollout aborted by request" if goal == RolloutStatus.ABORTED else ""
    current.updated_at = now
    return True


async def control(
    bus: Bus, settings: ApiSettings, target: RolloutTarget, action: str, *, caller: Principal
) -> RolloutView:
    """Pause, resume or abort the rollout's current run (compare-and-set against the deployer's loop);
    only a token that may act on the rollout's area may steer it."""
    if not caller.covers(target.area):
        raise texts.area_forbidden("the rollout", target.area, caller.areas)

    def change(current: Rollout | None) -> Rollout | None:
        rollout = found(current)
        return rollout if steer(rollout, action, timefmt.now()) else None

    after = await bus.store(subjects.ROLLOUTS).mutate(key_of(target), change)
    return rollout_view(found(after), settings.platform.timezone)
