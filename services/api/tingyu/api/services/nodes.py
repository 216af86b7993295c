"""Nodes (contract §六): the machines of the fleet, from the node registry."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

from tingyu.api import reads
from tingyu.api.config import ApiSettings
from tingyu.api.params import NodeQuery
from tingyu.api.schemas.nodes import NodeView
from tingyu.common.bus import Bus
from tingyu.common.models.nodes import NodeRecord
from tingyu.common.timefmt import to_wire


def node_view(record: NodeRecord, timezone: str) -> NodeView:
    """A machine in the contract's shape: `eth` and `diskinfo` are JSON strings, as old clients expect."""
    facts = record.facts
    return NodeView(
        area=facts.area,
        createtime=to_wire(record.createtime, timezone),
        memory=facts.memory,
        address=facts.nodename,
        ip=facts.address,
        bandwith=facts.bandwith,
        operatingsystem=facts.operatingsystem,
        cpu=facts.cpu,
        uuid=facts.uuid,
        operator=facts.operator,
        kernelversion=facts.kernelversion,
        nodename=facts.nodename,
        eth=json.dumps([nic.model_dump() for nic in facts.eth], ensure_ascii=False, separators=(",", ":")),
        systemos=facts.osimage,
        osimage=facts.osimage,
        diskinfo=json.dumps([d.model_dump() for d in facts.diskinfo], separators=(",", ":")),
        heartbeattime=to_wire(record.heartbeattime, timezone),
        status=record.status.value,
        architecture=facts.architecture,
        simulated=record.simulated,
    )


async def named(bus: Bus, settings: ApiSettings, names: list[str]) -> list[NodeView]:
    """Machines by nodename or uuid, in the order asked; TY0015 when one is unknown. A machine named
    twice (or by both its uuid and its nodename) is answered once."""
    uuids = dict.fromkeys(reads.node_key(name) for name in names)
    return [node_view(await reads.node(bus, uuid), settings.platform.timezone) for uuid in uuids]


async def every(bus: Bus, query: NodeQuery) -> list[NodeRecord]:
    """The machines `query` asks for, oldest first (every machine when it asks nothing)."""
    records = await reads.nodes_in_order(bus)
    if query.filtered:
        records = [record for record in records if query.matches(record)]
    if query.page:
        start = (query.page - 1) * query.page_size
        records = records[start : start + query.page_size]
    return records


async def listing(records: list[NodeRecord], timezone: str) -> AsyncIterator[bytes]:
    """The success envelope of `records`, encoded a chunk of machines at a time (a whole fleet's
    answer is tens of megabytes: never held as one string)."""
    yield b'{"msg":"success","code":200,"data":['
    for start in range(0, len(records), CHUNK):
        chunk = records[start : start + CHUNK]
        text = ",".join(node_view(r, timezone).model_dump_json(exclude_unset=True) for r in chunk)
        yield (text if start == 0 else "," + text).encode()
        await asyncio.sleep(0)  # let other requests run between chunks
    yield b"]}"


CHUNK = 500  # machines encoded per piece of a listing
