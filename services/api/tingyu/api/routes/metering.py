"""Routes of the contract's metering interfaces (§四 bandwidth, §五 resource use).

`info` stays a list, as the contract shows: one object per 5-minute bucket of the range.
The billing figures (peak, 95th percentile) ride in a separate top-level `summary`, which
clients written against the contract simply ignore. Metering answers over NATS; the API
never opens ClickHouse.
"""

from __future__ import annotations

from typing import Annotated

import nats
from fastapi import APIRouter, Depends, Query
from fastapi.responses import JSONResponse

from tingyu.api import envelope
from tingyu.api.config import ApiSettings
from tingyu.api.deps import BusDep, SettingsDep
from tingyu.common import subjects, timefmt
from tingyu.common.bus import Bus, responders
from tingyu.common.errors import (
    InvalidParameter,
    InvalidTimeRange,
    MissingParameter,
    Unavailable,
)
from tingyu.common.models.metering import MeteringQuery, MeteringReply, MeteringScope, MeteringSeries

router = APIRouter(prefix="/info", tags=["metering"])


def _time(name: str, text: str, tz: str) -> float:
    if not text:
        raise MissingParameter(f"缺少必填参数: {name}")
    try:
        return timefmt.from_wire(text, tz)
    except ValueError as exc:
        raise InvalidTimeRange(f"时间范围错误: {name} '{text}' is not yyyy-MM-dd HH:mm:ss") from exc


def _range(start_date: str, end_date: str, settings: ApiSettings) -> tuple[float, float]:
    """Both dates parsed, in order, and no longer apart than the configured limit."""
    tz = settings.platform.timezone
    start, end = _time("startDate", start_date, tz), _time("endDate", end_date, tz)
    if start > end:
        raise InvalidTimeRange(f"时间范围错误: startDate {start_date} is after endDate {end_date}")
    if end - start > settings.max_range_days * 86400:
        raise InvalidTimeRange(
            f"时间范围错误: the range is longer than {settings.max_range_days} days; ask for a shorter one"
        )
    return start, end


def _image_version(text: str) -> tuple[str, str]:
    """`name:version` split at its last colon (a registry host may carry a port)."""
    name, sep, version = text.rpartition(":")
    if not sep or not name or not version or "/" in version:
        raise InvalidParameter(f"参数值不合法: imageVersion '{text}' is not name:version")
    return name, version


async def _ask(bus: Bus, settings: ApiSettings, query: MeteringQuery) -> MeteringReply:
    try:
        # A failed query comes back raised as its TingyuError, for the error translator.
        return await responders.call(
            bus, subjects.METERING_QUERY, query, MeteringReply, timeout=settings.bus_timeout_s
        )
    except (nats.errors.TimeoutError, nats.errors.NoRespondersError) as exc:
        raise Unavailable("计量服务暂不可用,请稍后重试") from exc


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


@router.get("/bandWith/getAllNode")
async def bandwidth_all(bus: BusDep, settings: SettingsDep, dates: DatesDep) -> JSONResponse:
    """The account's bandwidth: every machine's counted NICs, summed per 5 minutes."""
    reply = await _query(bus, settings, dates, MeteringScope.ACCOUNT, MeteringSeries.BANDWIDTH)
    return _bandwidth(reply, settings.platform.timezone)


@router.get("/bandWith/getByImage")
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


@router.get("/bandWith/getByImageVersion")
async def bandwidth_by_version(
    bus: BusDep,
    settings: SettingsDep,
    dates: DatesDep,
    imageVersion: str = Query(""),
) -> JSONResponse:
    """Bandwidth of the containers of one image version (`name:version`; none: every container)."""
    image, version = _image_version(imageVersion.strip()) if imageVersion.strip() else ("", "")
    reply = await _query(
        bus, settings, dates, MeteringScope.CONTAINERS, MeteringSeries.BANDWIDTH, image=image, version=version
    )
    return _bandwidth(reply, settings.platform.timezone)


@router.get("/resourceUse/getByImage")
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


@router.get("/resourceUse/getByImageVersion")
async def resources_by_version(
    bus: BusDep,
    settings: SettingsDep,
    dates: DatesDep,
    imageVersion: str = Query(""),
    image: str = Query(""),
) -> JSONResponse:
    """CPU and memory of one image version (`imageVersion=name:version`; `image` is read as an alias)."""
    text = (imageVersion or image).strip()
    name, version = _image_version(text) if text else ("", "")
    reply = await _query(
        bus, settings, dates, MeteringScope.CONTAINERS, MeteringSeries.RESOURCES, image=name, version=version
    )
    return _resources(reply, settings.platform.timezone)
