"""Canary rollouts (contract §二 updateByInherit), and reading and steering one (extensions)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends

from tingyu.api.deps import BusDep, Operator, SettingsDep, caller
from tingyu.api.envelope import Envelope, EnvelopeRoute, ok
from tingyu.api.params import RolloutTargetDep
from tingyu.api.schemas.rollouts import RolloutAccepted, RolloutView
from tingyu.api.services import rollouts

router = APIRouter(
    prefix="/container", tags=["containers"], route_class=EnvelopeRoute, dependencies=[Depends(caller)]
)

# A plain object, checked by hand: the operator is judged first, whatever else is wrong (contract).
RolloutBody = Annotated[dict[str, Any], Body()]


@router.put("/updateByInherit", response_model=RolloutAccepted)
async def update_by_inherit(
    who: Operator, bus: BusDep, settings: SettingsDep, body: RolloutBody
) -> RolloutAccepted:
    """Canary rollout: move percent % of an area's and operator's containers of image to imageversion."""
    job = await rollouts.start(bus, settings, body, caller=who)
    return RolloutAccepted(msg="success", code=200, data=None, jobid=job)


@router.get("/rollout", response_model=Envelope[RolloutView])
async def get_rollout(bus: BusDep, settings: SettingsDep, target: RolloutTargetDep) -> Envelope[RolloutView]:
    """Extension: an image's rollout in one area and operator: its last run's status, progress, members."""
    return ok(await rollouts.read(bus, settings, target))


@router.put("/rollout/pause", response_model=Envelope[RolloutView])
async def pause_rollout(
    who: Operator, bus: BusDep, settings: SettingsDep, target: RolloutTargetDep
) -> Envelope[RolloutView]:
    """Extension: pause a rollout: no new upgrade is issued (those in flight finish) until it is resumed."""
    return ok(await rollouts.control(bus, settings, target, "pause", caller=who))


@router.put("/rollout/resume", response_model=Envelope[RolloutView])
async def resume_rollout(
    who: Operator, bus: BusDep, settings: SettingsDep, target: RolloutTargetDep
) -> Envelope[RolloutView]:
    """Extension: resume a paused rollout where it stopped."""
    return ok(await rollouts.control(bus, settings, target, "resume", caller=who))


@router.put("/rollout/abort", response_model=Envelope[RolloutView])
async def abort_rollout(
    who: Operator, bus: BusDep, settings: SettingsDep, target: RolloutTargetDep
) -> Envelope[RolloutView]:
    """Extension: abort a rollout: nothing more is issued and its jobs fail; a later call starts a new run."""
    return ok(await rollouts.control(bus, settings, target, "abort", caller=who))
