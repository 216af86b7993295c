"""Canary rollouts (contract §二 updateByInherit): a share of an area's containers moves to a new version."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends

from tingyu.api.deps import BusDep, Operator, SettingsDep, caller
from tingyu.api.envelope import EnvelopeRoute
from tingyu.api.schemas.rollouts import RolloutAccepted
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
