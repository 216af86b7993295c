"""Routes of the contract's metering interfaces (§四 bandwidth, §五 resource use).

`info` stays a list, as the contract shows: one object per 5-minute bucket of the range.
The billing figures (peak, 95th percentile) ride in a separate top-level `summary`, which
clients written against the contract simply ignore. Metering answers over NATS; the API
never opens ClickHouse.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Annotated, Any

import nats
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse

from tingyu.api import envelope
from tingyu.api.config import ApiSettings
from tingyu.api.deps import BusDep, SettingsDep
from tingyu.common import subjects, timefmt
from tingyu.common.bus import Bus
from tingyu.common.errors import (
    InternalError,
    InvalidParameter,
    InvalidTimeRange,
    MissingParameter,
    TingyuError,
    Unavailable,
)
from tingyu.common.models.metering import MeteringQuery, MeteringReply, MeteringScope, MeteringSeries

router = APIRouter(prefix="/info", tags=["metering"])

REPLY_ERRORS: dict[str, type[TingyuError]] = {InvalidTimeRange.code: InvalidTimeRange}


def _time(name: str, text: str, tz: str) -> float:
    if not text:
        raise MissingParameter(detail=f"{name} is required (yyyy-MM-dd HH:mm:ss)")
    try:
        return timefmt.from_wire(text, tz)
    except ValueError as exc:
        raise InvalidTimeRange(detail=f"{name} '{text}' is not yyyy-MM-dd HH:mm:ss") from exc


def _range(start_date: str, end_date: str, settings: ApiSettings) -> tuple[float, float]:
    """Both dates parsed, in order, and no longer apart than the configured limit."""
    tz = settings.platform.timezone
    start, end = _time("startDate", start_date, tz), _time("endDate", end_date, tz)
    if start > end:
        raise InvalidTimeRange(detail=f"startDate {start_date} is after endDate {end_date}")
    if end - start > settings.max_range_days * 86400:
        raise InvalidTimeRange(
            detail=f"the range is longer than {settings.max_range_days} days; ask for a shorter one"
        )
    return start, end


def _image_version(text: str, field: str = "imageVersion") -> tuple[str, str]:
    """`name:version` split at its last colon (a registry host may carry a port)."""
    name, sep, version = text.rpartition(":")
    if not sep or not name or not version or "/" in version:
        raise InvalidParameter(detail=f"{field} '{text}' is not name:version")
    return name, version


def _version_filter(image_version: str, image: str) -> tuple[str, str]:
    """The (image, version) of a by-version query; the contract names the parameter both ways.

    `imageVersion=name:version` or `image=name:version`: that version; `image=name` alone: every
    version of that image; `image=name&imageVersion=version`: that version; nothing: everything.
    """
    image_version, image = image_version.strip(), image.strip()
    if image and image_version:
        name, version = image_version.rpartition(":")[::2] if ":" in image_version else (image, image_version)
        if name != image:
            raise InvalidParameter(detail=f"image '{image}' and imageVersion '{image_version}' disagree")
        return name, version
    if image_version:
        return _image_version(image_version)
    if image and ":" in image.rsplit("/", 1)[-1]:
        return _image_version(image, "image")
    return image, ""


def _only(*allowed: str) -> Callable[[Request], Coroutine[Any, Any, None]]:
    """A dependency refusing query parameters the route does not read: an ignored filter is an error."""
    known = {"startDate", "endDate", *allowed}

    async def check(request: Request) -> None:
        unknown = sorted(set(request.query_params) - known)
        if unknown:
            reads = ", ".join(sorted(known))
            raise InvalidParameter(
                detail=f"unknown parameter {', '.join(unknown)}; this interface reads {reads}"
            )

    return check


async def _ask(bus: Bus, settings: ApiSettings, query: MeteringQuery) -> MeteringReply:
    try:
        reply = await bus.request(
            subjects.METERING_QUERY, query, MeteringReply, timeout=settings.bus_timeout_s
        )
    except (nats.errors.TimeoutError, nats.errors.NoRespondersError) as exc:
        raise Unavailable("计量服务暂不可用,请稍后重试") from exc
    if not reply.ok:
        raise REPLY_ERRORS.get(reply.code, InternalError)(reply.msg or None)
    return reply


def _bandwidth(reply: MeteringReply, tz: str) -> JSONResponse:
    info = [
        {"time": timefmt.to_wire(p.time, tz), "upbps": p.up_bps, "downbps": p.down_bps}
        for p in reply.columns.points(MeteringSeries.BANDWIDTH)
    ]
    s = reply.summary
    summary = {
        "points": s.buckets,
        "upBytes": s.up_bytes,
        "downBytes": s.down_bytes,
        "peakUpbps": s.peak_up_bps,
        "peakDownbps": s.peak_down_bps,
        "p95Upbps": s.p95_up_bps,
        "p95Downbps": s.p95_down_bps,
    }
    # Plain floats and strings only: answered as is, without FastAPI's per-value encoding pass
    # (a 93-day range is 26,785 points).
    return JSONResponse({**envelope.ok_info(info), "summary": summary})


def _resources(reply: MeteringReply, tz: str) -> JSONResponse:
    info = [
        {"time": timefmt.to_wire(p.time, tz), "cpu": p.cpu_cores, "memory": p.memory_mib}
        for p in reply.columns.points(MeteringSeries.RESOURCES)
    ]
    s = reply.summary
    summary = {
        "points": s.buckets,
        "peakCpu": s.peak_cpu_cores,
        "p95Cpu": s.p95_cpu_cores,
        "peakMemory": s.peak_memory_mib,
        "p95Memory": s.p95_memory_mib,
    }
    # Plain floats and strings only: answered as is, without FastAPI's per-value encoding pass
    # (a 93-day range is 26,785 points).
    return JSONResponse({**envelope.ok_info(info), "summary": summary})


async def _dates(startDate: str = Query(""), endDate: str = Query("")) -> tuple[str, str]:
    """The contract's `startDate` and `endDate` (yyyy-MM-dd HH:mm:ss, platform time zone)."""
    return startDate, endDate


DatesDep = Annotated[tuple[str, str], Depends(_dates)]


async def _query(
    bus: Bus,
    settings: ApiSettings,
    dates: tuple[str, str],
    scope: MeteringScope,
    series: MeteringSeries,
    *,
    image: str = "",
    version: str = "",
) -> MeteringReply:
    start, end = _range(dates[0], dates[1], settings)
    query = MeteringQuery(scope=scope, series=series, start=start, end=end, image=image, version=version)
    return await _ask(bus, settings, query)


@router.get("/bandWith/getAllNode", dependencies=[Depends(_only())])
async def bandwidth_all(bus: BusDep, settings: SettingsDep, dates: DatesDep) -> JSONResponse:
    """The account's bandwidth: every machine's counted NICs, summed per 5 minutes."""
    reply = await _query(bus, settings, dates, MeteringScope.ACCOUNT, MeteringSeries.BANDWIDTH)
    return _bandwidth(reply, settings.platform.timezone)


@router.get("/bandWith/getByImage", dependencies=[Depends(_only("image"))])
async def bandwidth_by_image(
    bus: BusDep,
    settings: SettingsDep,
    dates: DatesDep,
    image: str = Query(""),
) -> JSONResponse:
    """Bandwidth of the containers of one image (no image: of every container)."""
    reply = await _query(
        bus, settings, dates, MeteringScope.CONTAINERS, MeteringSeries.BANDWIDTH, image=image.strip()
    )
    return _bandwidth(reply, settings.platform.timezone)


@router.get("/bandWith/getByImageVersion", dependencies=[Depends(_only("imageVersion", "image"))])
async def bandwidth_by_version(
    bus: BusDep,
    settings: SettingsDep,
    dates: DatesDep,
    imageVersion: str = Query(""),
    image: str = Query(""),
) -> JSONResponse:
    """Bandwidth of one image version (`imageVersion` or `image` = name:version; none: every container)."""
    image, version = _version_filter(imageVersion, image)
    reply = await _query(
        bus, settings, dates, MeteringScope.CONTAINERS, MeteringSeries.BANDWIDTH, image=image, version=version
    )
    return _bandwidth(reply, settings.platform.timezone)


@router.get("/resourceUse/getByImage", dependencies=[Depends(_only("image"))])
async def resources_by_image(
    bus: BusDep,
    settings: SettingsDep,
    dates: DatesDep,
    image: str = Query(""),
) -> JSONResponse:
    """CPU cores and memory MiB used by the containers of one image (no image: every container)."""
    reply = await _query(
        bus, settings, dates, MeteringScope.CONTAINERS, MeteringSeries.RESOURCES, image=image.strip()
    )
    return _resources(reply, settings.platform.timezone)


@router.get("/resourceUse/getByImageVersion", dependencies=[Depends(_only("imageVersion", "image"))])
async def resources_by_version(
    bus: BusDep,
    settings: SettingsDep,
    dates: DatesDep,
    imageVersion: str = Query(""),
    image: str = Query(""),
) -> JSONResponse:
    """CPU and memory of one image version (`imageVersion` or `image` = name:version; none: everything)."""
    name, version = _version_filter(imageVersion, image)
    reply = await _query(
        bus, settings, dates, MeteringScope.CONTAINERS, MeteringSeries.RESOURCES, image=name, version=version
    )
    return _resources(reply, settings.platform.timezone)
