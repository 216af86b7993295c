"""Image pre-pull (`/image/prepull`, an extension; docs/remote.md): machines fetch an image ahead of a
rollout, as one job whose `result` counts them."""

from __future__ import annotations

from typing import Any

from tingyu.api import reads, texts
from tingyu.api.auth import Principal
from tingyu.api.config import ApiSettings
from tingyu.api.services.rollouts import image_of, percent, text
from tingyu.common import timefmt
from tingyu.common.bus import Bus
from tingyu.common.errors import InvalidOperator, NodeNotFound
from tingyu.common.jobs import JobStore, job_id
from tingyu.common.models.nodes import OPERATORS
from tingyu.common.models.remote import MAX_PULL_RATE, PrepullCommand

MAX_DEADLINE_S = 7 * 86400.0
MIN_PULL_RATE = 16 * 1024  # bytes per second: slower, an image of some MiB outlasts any pull timeout


async def machines(bus: Bus, settings: ApiSettings, body: dict[str, Any], caller: Principal) -> list[str]:
    """The listed uuids, each once, each registered and each in the caller's areas."""
    uuids = body.get("uuids")
    if not isinstance(uuids, list) or not all(isinstance(u, str) for u in uuids):
        raise texts.not_allowed("uuids must be a list of machine uuids")
    wanted = list(dict.fromkeys(u.strip() for u in uuids if u.strip()))
    if not wanted:
        raise texts.required("uuids")
    if len(wanted) > settings.max_items:
        raise texts.over_limit(settings.max_items, "uuids")
    for uuid in wanted:
        node = await reads.find_node(bus, uuid)
        if node is None:
            raise NodeNotFound(f"{NodeNotFound.default_msg} {uuid}")
        if not caller.covers(node.area):
            raise texts.area_forbidden(f"machine {uuid}", node.area, caller.areas)
    return wanted


def deadline_s(body: dict[str, Any], settings: ApiSettings) -> float:
    value = body.get("deadline", settings.prepull_deadline_s)
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= MAX_DEADLINE_S:
        raise texts.not_allowed(f"deadline must be seconds from 1 to {MAX_DEADLINE_S:g}, not {value!r}")
    return float(value)


def ratelimit(body: dict[str, Any]) -> int:
    """The job's cap in bytes per second per machine (absent: the machines' own caps only)."""
    value = body.get("ratelimit", 0)
    if value == 0 and not isinstance(value, bool):
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or not MIN_PULL_RATE <= value <= MAX_PULL_RATE:
        raise texts.not_allowed(
            f"ratelimit must be bytes per second from {MIN_PULL_RATE} to {MAX_PULL_RATE} (or 0: no cap), "
            f"not {value!r}"
        )
    return value


async def start(bus: Bus, settings: ApiSettings, body: dict[str, Any], *, caller: Principal) -> str:
    """Check the request and submit the pre-pull's job; answers its id."""
    by_uuid = "uuids" in body
    if not by_uuid and body.get("operator") not in OPERATORS:
        raise InvalidOperator()
    uuids = await machines(bus, settings, body, caller) if by_uuid else []
    area = "" if by_uuid else text(body, "area")
    if not caller.covers(area) and not by_uuid:
        raise texts.area_forbidden("the pre-pull", area, caller.areas)
    share = percent(body) if not by_uuid and body.get("percent") is not None else 100.0
    cap = ratelimit(body)
    patch = await image_of(bus, settings, body)
    now = timefmt.now()
    command = PrepullCommand(
        job_id=job_id(),
        image=patch.image,
        imageversion=patch.imageversion,
        image_ref=patch.image_ref,
        area=area,
        operator="" if by_uuid else str(body["operator"]),
        percent=share,
        uuids=uuids,
        deadline=now + deadline_s(body, settings),
        issued_at=now,
        ratelimit=cap,
    )
    await JobStore(bus).submit(command)
    return command.job_id
