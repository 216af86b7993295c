"""Node interfaces (contract §六): the machines of the fleet, from the node registry."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from tingyu.api.deps import BusDep, SettingsDep, caller
from tingyu.api.envelope import Envelope, EnvelopeRoute, ok
from tingyu.api.params import NodeNames
from tingyu.api.schemas.nodes import NodeView
from tingyu.api.services import nodes

router = APIRouter(prefix="/node", tags=["nodes"], route_class=EnvelopeRoute, dependencies=[Depends(caller)])


@router.get("/get", response_model=Envelope[list[NodeView]])
async def get(bus: BusDep, settings: SettingsDep, names: NodeNames) -> Envelope[list[NodeView]]:
    """Machines by nodename or uuid (comma-separated, duplicates folded); TY0015 when one is unknown."""
    return ok(await nodes.named(bus, settings, names))


@router.get("/list", response_model=Envelope[list[NodeView]])
async def list_all(bus: BusDep, settings: SettingsDep) -> Envelope[list[NodeView]]:
    """Every machine, oldest first."""
    return ok(await nodes.every(bus, settings))
