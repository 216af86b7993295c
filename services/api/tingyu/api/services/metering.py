"""Metering (contract §四, §五): the metering service answers over NATS; the API never opens ClickHouse."""

from __future__ import annotations

import nats.errors

from tingyu.api import texts
from tingyu.api.config import ApiSettings
from tingyu.common import subjects
from tingyu.common.bus import Bus, responders
from tingyu.common.models.metering import MeteringQuery, MeteringReply, MeteringScope, MeteringSeries


async def points(
    bus: Bus,
    settings: ApiSettings,
    scope: MeteringScope,
    series: MeteringSeries,
    *,
    dates: tuple[float, float],
    image: tuple[str, str] = ("", ""),
) -> MeteringReply:
    """The 5-minute points and summary of `series` over `dates` (epoch seconds), for every machine
    (ACCOUNT) or the containers of an image and version ("" for every one)."""
    start, end = dates
    query = MeteringQuery(scope=scope, series=series, start=start, end=end, image=image[0], version=image[1])
    try:
        return await responders.call(
            bus, subjects.METERING_QUERY, query, MeteringReply, settings.bus_timeout_s
        )
    except (nats.errors.TimeoutError, nats.errors.NoRespondersError) as exc:
        raise texts.metering_unavailable() from exc
