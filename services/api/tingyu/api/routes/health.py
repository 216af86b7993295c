"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter

from tingyu.api.deps import BusDep
from tingyu.api.envelope import Envelope, EnvelopeRoute, ok
from tingyu.api.schemas.health import Health

router = APIRouter(tags=["health"], route_class=EnvelopeRoute)


@router.get("/healthz", response_model=Envelope[Health])
async def healthz(bus: BusDep) -> Envelope[Health]:
    """Alive while the process answers; `nats` says whether it is connected to NATS."""
    return ok(Health(nats=bus.connected))
