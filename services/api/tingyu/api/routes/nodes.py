"""Node interfaces (contract §六): the machines of the fleet, from the node registry."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from fastapi.responses import Response, StreamingResponse

from tingyu.api.deps import BusDep, SettingsDep, caller
from tingyu.api.envelope import Envelope, EnvelopeRoute
from tingyu.api.params import NodeNames, NodeQueryDep
from tingyu.api.schemas.nodes import NodeView
from tingyu.api.services import nodes

router = APIRouter(prefix="/node", tags=["nodes"], route_class=EnvelopeRoute, dependencies=[Depends(caller)])


@router.get("/get", response_model=Envelope[list[NodeView]])
async def get(bus: BusDep, settings: SettingsDep, names: NodeNames) -> Response:
    """Machines by nodename or uuid (comma-separated, duplicates folded); TY0015 when one is unknown.
    Each is answered as its `/node/list` entry, already encoded."""
    return Response(nodes.answer(await nodes.named(bus, settings, names)), media_type="application/json")


@router.get("/list", response_model=Envelope[list[NodeView]])
async def list_all(bus: BusDep, settings: SettingsDep, query: NodeQueryDep) -> StreamingResponse:
    """Every machine, oldest first; optionally only those of an area, operator or status, and one
    page of them (`page` from 1, `pageSize` up to 1000). The answer is streamed."""
    entries = await nodes.every(bus, query, settings.platform.timezone)
    return StreamingResponse(nodes.listing(entries), media_type="application/json")
