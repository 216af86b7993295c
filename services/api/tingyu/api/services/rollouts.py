"""Canary rollouts (contract §二 updateByInherit): a share of an area's containers moves to a new version."""

from __future__ import annotations

from typing import Any

from tingyu.api import texts
from tingyu.api.auth import Principal
from tingyu.api.config import ApiSettings
from tingyu.api.images_ref import UnknownImage, resolve
from tingyu.common import timefmt
from tingyu.common.bus import Bus
from tingyu.common.errors import InvalidOperator
from tingyu.common.jobs import JobStore, job_id
from tingyu.common.models.nodes import OPERATORS
from tingyu.common.models.rollouts import RolloutCommand


def text(body: dict[str, Any], field: str) -> str:
    value = body.get(field)
    if value is None or value == "":
        raise texts.missing(field)
    if not isinstance(value, str):
        raise texts.invalid(f"{field} must be a string")
    return value.strip()


def percent(body: dict[str, Any]) -> float:
    value = body.get("percent")
    if value is None:
        raise texts.missing("percent")
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 100:
        raise texts.invalid(f"percent must be a number from 0 to 100, not {value!r}")
    return float(value)


async def start(bus: Bus, settings: ApiSettings, body: dict[str, Any], *, caller: Principal) -> str:
    """Check the request (the operator first, whatever else is wrong: the contract) and submit the
    rollout's job; answers its id."""
    if body.get("operator") not in OPERATORS:
        raise InvalidOperator()
    share = percent(body)
    area = text(body, "area")
    if not caller.covers(area):
        raise texts.area_forbidden("the rollout", area, caller.areas)
    image = text(body, "image")
    version = body.get("imageversion") or ""
    if not isinstance(version, str):
        raise texts.invalid("imageversion must be a string")
    try:
        patch = await resolve(bus, settings.platform.registry, image, version.strip())
    except UnknownImage as exc:
        raise texts.invalid(str(exc)) from exc
    prepull = body.get("prepull", False)
    if not isinstance(prepull, bool):
        raise texts.invalid("prepull must be true or false")
    command = RolloutCommand(
        job_id=job_id(),
        area=area,
        operator=body["operator"],
        image=image,
        patch=patch,
        percent=share,
        issued_at=timefmt.now(),
        prepull=prepull,
    )
    await JobStore(bus).submit(command)
    return command.job_id
