"""The node interfaces' answer (contract §六)."""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, Field

from tingyu.common.models.nodes import NodeRecord
from tingyu.common.timefmt import to_wire


class NodeView(BaseModel):
    """A machine in the contract's shape: `eth` and `diskinfo` are JSON strings, as old clients expect."""

    area: str
    createtime: str
    memory: int = Field(description="MiB")
    address: str = Field(description="The nodename, as the contract's example shows (the IP is under `ip`)")
    ip: str = Field(description="Extension: the machine's address")
    bandwith: int = Field(description="Mbps")
    operatingsystem: str
    cpu: int
    uuid: str
    operator: str
    kernelversion: str
    nodename: str
    eth: str = Field(description="JSON list of {Name, IP, Type}")
    systemos: str
    osimage: str
    diskinfo: str = Field(description="JSON list of {Name, Size, Use} (GiB)")
    heartbeattime: str
    status: str = Field(description="Ready or NotReady")
    architecture: str
    simulated: bool


def node_fields(record: NodeRecord, timezone: str) -> dict[str, Any]:
    """A machine's `NodeView` fields, in the model's order: `eth` and `diskinfo` become JSON strings."""
    facts = record.facts
    return {
        "area": facts.area,
        "createtime": to_wire(record.createtime, timezone),
        "memory": facts.memory,
        "address": facts.nodename,
        "ip": facts.address,
        "bandwith": facts.bandwith,
        "operatingsystem": facts.operatingsystem,
        "cpu": facts.cpu,
        "uuid": facts.uuid,
        "operator": facts.operator,
        "kernelversion": facts.kernelversion,
        "nodename": facts.nodename,
        "eth": _compact([nic.model_dump() for nic in facts.eth]),
        "systemos": facts.osimage,
        "osimage": facts.osimage,
        "diskinfo": json.dumps([disk.model_dump() for disk in facts.diskinfo], separators=(",", ":")),
        "heartbeattime": to_wire(record.heartbeattime, timezone),
        "status": record.status.value,
        "architecture": facts.architecture,
        "simulated": record.simulated,
    }


def node_entry(record: NodeRecord, timezone: str) -> bytes:
    """A machine as one entry of `/node/list`: the JSON `NodeView(**node_fields(...))` encodes to,
    byte for byte, at a fraction of the cost (every field is a str, an int or a bool, which the
    standard encoder writes as pydantic does; tests/unit/api/test_node_entry.py holds it to that).
    A record read from its bucket holds no lone surrogate (its JSON parser refuses them), the one
    string UTF-8 cannot encode."""
    return _compact(node_fields(record, timezone)).encode()


_compact = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
