"""Canary rollouts (contract §二 updateByInherit): a share of an area's containers moves to a new version."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Query

from tingyu.api import envelope
from tingyu.api.deps import BusDep, SettingsDep
from tingyu.api.images_ref import UnknownImage, resolve
from tingyu.common import jobs, subjects, timefmt
from tingyu.common.bus import Bus, kv_get, kv_mutate
from tingyu.common.errors import InvalidOperator, InvalidParameter, MissingParameter, RolloutNotFound
from tingyu.common.models.jobs import JobKind
from tingyu.common.models.nodes import OPERATORS
from tingyu.common.models.rollouts import Rollout, RolloutCommand, RolloutStatus, rollout_key

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


# --- Reading and steering a rollout (extensions) ----------------------------------------------------


def rollout_view(rollout: Rollout, timezone: str) -> dict[str, Any]:
    """A rollout's progress and members, in rollout order."""
    counts = dict.fromkeys(("pending", "issued", "updated", "failed"), 0)
    for member in rollout.members.values():
        counts[member.state.value] += 1
    return {
        "rolloutid": rollout.rollout_id,
        "area": rollout.area,
        "operator": rollout.operator,
        "image": rollout.image,
        "imageversion": rollout.patch.imageversion,
        "percent": rollout.percent,
        "status": rollout.status.value,
        "message": rollout.message,
        "total": rollout.total,
        "target": rollout.target,
        "updated": counts["updated"],
        "failed": counts["failed"],
        "inflight": counts["issued"],
        "pending": counts["pending"],
        "jobids": rollout.jobs,
        "createtime": timefmt.to_wire(rollout.created_at, timezone),
        "updatetime": timefmt.to_wire(rollout.updated_at, timezone),
        "members": [
            {
                "deploymentname": m.name,
                "uuid": m.node_uuid,
                "state": m.state.value,
                "jobid": m.job_id,
                "message": m.message,
            }
            for m in rollout.members.values()
        ],
    }


def _rollout_id(area: str, operator: str, image: str) -> str:
    if operator not in OPERATORS:
        raise InvalidOperator()
    if not area.strip() or not image.strip():
        raise MissingParameter(detail="area, operator and image are required")
    return rollout_key(area.strip(), operator, image.strip())


async def _stored(bus: Bus, key: str) -> Rollout:
    found, _ = await kv_get(await bus.kv(subjects.ROLLOUTS), key, Rollout)
    if found is None:
        raise RolloutNotFound(detail="no rollout of that image was started in that area and operator")
    return found


# Which statuses each control moves from, and to.
CONTROLS = {
    "pause": ({RolloutStatus.RUNNING, RolloutStatus.PAUSED}, RolloutStatus.PAUSED),
    "resume": ({RolloutStatus.RUNNING, RolloutStatus.PAUSED}, RolloutStatus.RUNNING),
    "abort": ({RolloutStatus.RUNNING, RolloutStatus.PAUSED, RolloutStatus.ABORTED}, RolloutStatus.ABORTED),
}


async def _control(bus: Bus, settings: SettingsDep, action: str, key: str) -> dict[str, Any]:
    """Move the current run (compare-and-set against the deployer's loop); refused once it has ended."""
    sources, target = CONTROLS[action]
    refused: Rollout | None = None

    def change(current: Rollout | None) -> Rollout | None:
        nonlocal refused
        refused = None
        if current is None:
            return None
        if current.status not in sources:
            refused = current
            return None
        if current.status == target:
            return None
        current.status = target
        current.message = "rollout aborted by request" if target == RolloutStatus.ABORTED else ""
        current.updated_at = timefmt.now()
        return current

    await kv_mutate(await bus.kv(subjects.ROLLOUTS), key, Rollout, change)
    if refused is not None:
        raise InvalidParameter(
            detail=f"the rollout's last run is {refused.status.value}; it cannot be {action}d "
            "(a new updateByInherit call starts a new run)"
        )
    return envelope.ok(rollout_view(await _stored(bus, key), settings.platform.timezone))


@router.get("/rollout")
async def get_rollout(
    bus: BusDep,
    settings: SettingsDep,
    area: str = Query(""),
    operator: str = Query(""),
    image: str = Query(""),
) -> dict[str, Any]:
    """The rollout of an image in one area and operator: its last run's status, progress and members."""
    key = _rollout_id(area, operator, image)
    return envelope.ok(rollout_view(await _stored(bus, key), settings.platform.timezone))


@router.put("/rollout/pause")
async def pause_rollout(
    bus: BusDep,
    settings: SettingsDep,
    area: str = Query(""),
    operator: str = Query(""),
    image: str = Query(""),
) -> dict[str, Any]:
    """Pause a rollout: no new upgrade is issued (those in flight finish) until it is resumed."""
    key = _rollout_id(area, operator, image)
    await _stored(bus, key)
    return await _control(bus, settings, "pause", key)


@router.put("/rollout/resume")
async def resume_rollout(
    bus: BusDep,
    settings: SettingsDep,
    area: str = Query(""),
    operator: str = Query(""),
    image: str = Query(""),
) -> dict[str, Any]:
    """Resume a paused rollout where it stopped."""
    key = _rollout_id(area, operator, image)
    await _stored(bus, key)
    return await _control(bus, settings, "resume", key)


@router.put("/rollout/abort")
async def abort_rollout(
    bus: BusDep,
    settings: SettingsDep,
    area: str = Query(""),
    operator: str = Query(""),
    image: str = Query(""),
) -> dict[str, Any]:
    """Abort a rollout: nothing more is issued and its jobs fail; a later call starts a new run."""
    key = _rollout_id(area, operator, image)
    await _stored(bus, key)
    return await _control(bus, settings, "abort", key)
