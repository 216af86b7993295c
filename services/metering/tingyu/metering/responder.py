"""Answering the API's range queries (core-NATS request/reply, queue group of metering replicas)."""

from __future__ import annotations

import logging

from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from tingyu.common import subjects
from tingyu.common.bus import Bus
from tingyu.common.errors import InternalError, InvalidTimeRange
from tingyu.common.models.metering import MeteringColumns, MeteringQuery, MeteringReply
from tingyu.metering.queries import run_query
from tingyu.metering.store import Store

log = logging.getLogger(__name__)


async def answer(store: Store, data: bytes) -> MeteringReply:
    """The reply to one request; every failure becomes a TY code the API passes on."""
    try:
        query = MeteringQuery.from_bytes(data)
    except ValueError as exc:
        return MeteringReply(ok=False, code=InternalError.code, msg=f"bad metering query: {exc}")
    if query.start > query.end:
        return MeteringReply(ok=False, code=InvalidTimeRange.code, msg="时间范围错误: start is after end")
    try:
        points, summary = await run_query(store, query, (query.series,))
    except Exception:
        log.exception("metering query failed: %s", query)
        return MeteringReply(ok=False, code=InternalError.code, msg=InternalError.default_msg)
    return MeteringReply(columns=MeteringColumns.of(points, query.series), summary=summary)


async def serve(bus: Bus, store: Store) -> Subscription:
    """Subscribe in the metering queue group; the caller unsubscribes at stop."""

    async def handle(msg: Msg) -> None:
        reply = await answer(store, msg.data)
        await msg.respond(reply.to_bytes())

    return await bus.nc.subscribe(subjects.METERING_QUERY, queue=subjects.QUEUE_METERING, cb=handle)
