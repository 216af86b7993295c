"""Nodes (contract §六): the machines of the fleet, from the node registry."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from tingyu.api import reads
from tingyu.api.config import ApiSettings
from tingyu.api.params import NodeQuery
from tingyu.api.views import AREA, OPERATOR, STATUS
from tingyu.common.bus import Bus


async def named(bus: Bus, settings: ApiSettings, names: list[str]) -> list[bytes]:
    """Machines by nodename or uuid as their encoded `/node/list` entries, in the order asked;
    TY0015 when one is unknown. A machine named twice (or by both its uuid and its nodename) is
    answered once."""
    uuids = dict.fromkeys(reads.node_key(name) for name in names)
    return [await reads.node_entry(bus, uuid, settings.platform.timezone) for uuid in uuids]


async def every(bus: Bus, query: NodeQuery, timezone: str) -> list[bytes]:
    """The `/node/list` entries of the machines `query` asks for, oldest first (every machine when
    it asks nothing)."""
    if not query.filtered:  # only the page's machines are gathered
        return reads.node_entries(bus, timezone, await reads.machines_in_order(bus, timezone, query.window))
    machines = await reads.machines_in_order(bus, timezone)
    chosen = [m for m in machines if query.accepts(m[AREA], m[OPERATOR], m[STATUS])]
    return reads.node_entries(bus, timezone, chosen[query.window])


# The success envelope around a list of machines, as `ok(...)` encodes it (the same bytes).
OPENING = b'{"msg":"success","code":200,"data":['
CLOSING = b"]}"


def answer(entries: list[bytes]) -> bytes:
    """The success envelope of a few encoded `entries`, whole."""
    return OPENING + b",".join(entries) + CLOSING


async def listing(entries: list[bytes]) -> AsyncIterator[bytes]:
    """The success envelope of the encoded `entries`, a chunk of machines at a time (a whole
    fleet's answer is tens of megabytes: never held as one string)."""
    yield OPENING
    for start in range(0, len(entries), CHUNK):
        text = b",".join(entries[start : start + CHUNK])
        yield text if start == 0 else b"," + text
        await asyncio.sleep(0)  # let other requests run between chunks
    yield CLOSING


CHUNK = 2000  # machines per piece of a listing
