"""Node interfaces (contract §六): the machines of the fleet, from the node registry."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Query

from tingyu.api import envelope, state
from tingyu.api.deps import BusDep, SettingsDep
from tingyu.common.errors import InvalidParameter, MissingParameter
from tingyu.common.models.nodes import NodeRecord
from tingyu.common.names import split_csv
from tingyu.common.timefmt import to_wire

router = APIRouter(prefix="/node", tags=["nodes"])


def node_view(record: NodeRecord, timezone: str) -> dict[str, Any]:
    """A machine in the contract's shape: `eth` and `diskinfo` are JSON strings, as old clients expect."""
    facts = record.facts
    return {
        "area": facts.area,
        "createtime": to_wire(record.createtime, timezone),
        "memory": facts.memory,
        "address": facts.nodename,  # as the contract's example shows; the IP is under `ip`
        "ip": facts.address,
        "bandwith": facts.bandwith,
        "operatingsystem": facts.operatingsystem,
        "cpu": facts.cpu,
        "uuid": facts.uuid,
        "operator": facts.operator,
        "kernelversion": facts.kernelversion,
        "nodename": facts.nodename,
        "eth": json.dumps([nic.model_dump() for nic in facts.eth], ensure_ascii=False, separators=(",", ":")),
        "systemos": facts.osimage,
        "osimage": facts.osimage,
        "diskinfo": json.dumps([d.model_dump() for d in facts.diskinfo], separators=(",", ":")),
        "heartbeattime": to_wire(record.heartbeattime, timezone),
        "status": record.status.value,
        "architecture": facts.architecture,
        "simulated": record.simulated,
    }


@router.get("/get")
async def get(bus: BusDep, settings: SettingsDep, name: str = Query("")) -> dict[str, Any]:
    """Machines by nodename or uuid (comma-separated, duplicates folded); TY0015 when one is unknown."""
    names = split_csv(name)
    if not names:
        raise MissingParameter(detail="name is required (machine nodenames or uuids, comma-separated)")
    if len(names) > settings.max_items:
        raise InvalidParameter(detail=f"at most {settings.max_items} names per request")
    # A machine named twice (or by both its uuid and its nodename) is answered once.
    keys = list(dict.fromkeys(state.node_key(one) for one in names))
    data = [node_view(await state.node(bus, key), settings.platform.timezone) for key in keys]
    return envelope.ok(data)


@router.get("/list")
async def list_all(bus: BusDep, settings: SettingsDep) -> dict[str, Any]:
    """Every machine, oldest first."""
    records = sorted(await state.all_nodes(bus), key=lambda r: (r.createtime, r.facts.uuid))
    return envelope.ok([node_view(r, settings.platform.timezone) for r in records])
