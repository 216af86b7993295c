"""Routes of the contract's metering interfaces (§四 bandwidth, §五 resource use).

Answers are built as plain values and sent as they are (no per-value encoding pass: a 93-day range
is 26,785 points); `response_model` declares their shape for OpenAPI only.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse

from tingyu.api.deps import BusDep, SettingsDep, caller
from tingyu.api.envelope import EnvelopeRoute
from tingyu.api.params import ImageAnyVersion, ImageVersionOrImage, TimeRange, only
from tingyu.api.schemas.metering import BandwidthAnswer, ResourceAnswer, bandwidth_body, resources_body
from tingyu.api.services import metering
from tingyu.common.models.metering import MeteringScope, MeteringSeries

router = APIRouter(
    prefix="/info", tags=["metering"], route_class=EnvelopeRoute, dependencies=[Depends(caller)]
)

ACCOUNT, CONTAINERS = MeteringScope.ACCOUNT, MeteringScope.CONTAINERS
BANDWIDTH, RESOURCES = MeteringSeries.BANDWIDTH, MeteringSeries.RESOURCES
# A parameter a route does not read is refused (an ignored filter would answer the wrong numbers).
DATES_ONLY, BY_IMAGE, BY_VERSION = only(), only("image"), only("imageVersion", "image")


@router.get("/bandWith/getAllNode", response_model=BandwidthAnswer, dependencies=[Depends(DATES_ONLY)])
async def bandwidth_all(bus: BusDep, settings: SettingsDep, dates: TimeRange) -> JSONResponse:
    """The account's bandwidth: every machine's counted NICs, summed per 5 minutes."""
    reply = await metering.points(bus, settings, ACCOUNT, BANDWIDTH, dates=dates)
    return JSONResponse(bandwidth_body(reply, settings.platform.timezone))


@router.get("/bandWith/getByImage", response_model=BandwidthAnswer, dependencies=[Depends(BY_IMAGE)])
async def bandwidth_by_image(
    bus: BusDep, settings: SettingsDep, dates: TimeRange, image: ImageAnyVersion
) -> JSONResponse:
    """Bandwidth of the containers of one image (no image: of every container)."""
    reply = await metering.points(bus, settings, CONTAINERS, BANDWIDTH, dates=dates, image=image)
    return JSONResponse(bandwidth_body(reply, settings.platform.timezone))


@router.get("/bandWith/getByImageVersion", response_model=BandwidthAnswer, dependencies=[Depends(BY_VERSION)])
async def bandwidth_by_version(
    bus: BusDep, settings: SettingsDep, version: ImageVersionOrImage, dates: TimeRange
) -> JSONResponse:
    """Bandwidth of one image version (`imageVersion` or `image` = name:version; none: every container)."""
    reply = await metering.points(bus, settings, CONTAINERS, BANDWIDTH, dates=dates, image=version)
    return JSONResponse(bandwidth_body(reply, settings.platform.timezone))


@router.get("/resourceUse/getByImage", response_model=ResourceAnswer, dependencies=[Depends(BY_IMAGE)])
async def resources_by_image(
    bus: BusDep, settings: SettingsDep, dates: TimeRange, image: ImageAnyVersion
) -> JSONResponse:
    """CPU cores and memory MiB used by the containers of one image (no image: every container)."""
    reply = await metering.points(bus, settings, CONTAINERS, RESOURCES, dates=dates, image=image)
    return JSONResponse(resources_body(reply, settings.platform.timezone))


@router.get(
    "/resourceUse/getByImageVersion", response_model=ResourceAnswer, dependencies=[Depends(BY_VERSION)]
)
async def resources_by_version(
    bus: BusDep, settings: SettingsDep, version: ImageVersionOrImage, dates: TimeRange
) -> JSONResponse:
    """CPU and memory of one image version (`imageVersion` or `image` = name:version; none: everything)."""
    reply = await metering.points(bus, settings, CONTAINERS, RESOURCES, dates=dates, image=version)
    return JSONResponse(resources_body(reply, settings.platform.timezone))
