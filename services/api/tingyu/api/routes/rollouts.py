"""Canary rollouts (contract §二 updateByInherit): a share of an area's containers moves to a new version."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body

from tingyu.api import envelope
from tingyu.api.deps import BusDep, SettingsDep
from tingyu.api.images_ref import UnknownImage, resolve
from tingyu.common import jobs, subjects, timefmt
from tingyu.common.errors import InvalidOperator, InvalidParameter, MissingParameter
from tingyu.common.models.jobs import JobKind
from tingyu.common.models.nodes import OPERATORS
from tingyu.common.models.rollouts import RolloutCommand

router = APIRouter(prefix="/container", tags=["containers"])

# A plain object, checked by hand: the operator is judged first, whatever else is wrong (contract).
RolloutBody = Annotated[dict[str, Any], Body()]


def _text(body: dict[str, Any], field: str) -> str:
    value = body.get(field)
    if value is None or value == "":
        raise MissingParameter(detail=f"{field} is required")
    if not isinstance(value, str):
        raise InvalidParameter(detail=f"{field} must be a string")
    return value.strip()


def _percent(body: dict[str, Any]) -> float:
    value = body.get("percent")
    if value is None:
        raise MissingParameter(detail="percent is required")
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 100:
        raise InvalidParameter(detail=f"percent must be a number from 0 to 100, not {value!r}")
    return float(value)


@router.put("/updateByInherit")
async def update_by_inherit(bus: BusDep, settings: SettingsDep, body: RolloutBody) -> dict[str, Any]:
    """Canary rollout: move percent % of an area's and operator's containers of image to imageversion."""
    if body.get("operator") not in OPERATORS:
        raise InvalidOperator()
    percent = _percent(body)
    area = _text(body, "area")
    image = _text(body, "image")
    version = body.get("imageversion") or ""
    if not isinstance(version, str):
        raise InvalidParameter(detail="imageversion must be a string")
    try:
        patch = await resolve(bus, settings.platform.registry, image, version.strip())
    except UnknownImage as exc:
        raise InvalidParameter(detail=str(exc)) from exc
    command = RolloutCommand(
        job_id=jobs.job_id(),
        area=area,
        operator=body["operator"],
        image=image,
        patch=patch,
        percent=percent,
        issued_at=timefmt.now(),
    )
    await jobs.submit_job(
        bus,
        kind=JobKind.ROLLOUT,
        op="rollout",
        subject_of=subjects.rollout_command,
        command=command,
        job_id=command.job_id,
    )
    # `data` stays null as the contract shows; the job id is an extra key old clients ignore.
    return {**envelope.ok(None), "jobid": command.job_id}
