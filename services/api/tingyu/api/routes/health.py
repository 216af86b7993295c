"""Liveness and readiness (both public: a load balancer or supervisor asks them without a token)."""

from __future__ import annotations

from fastapi import APIRouter, Request

from tingyu.api.deps import BusDep
from tingyu.api.envelope import Envelope, EnvelopeRoute, ErrorBody, ok
from tingyu.api.schemas.health import Health, Ready
from tingyu.api.services import health

router = APIRouter(tags=["health"], route_class=EnvelopeRoute)


@router.get("/healthz", response_model=Envelope[Health])
async def healthz(bus: BusDep) -> Envelope[Health]:
    """Alive while the process answers; `nats` says whether it is connected to NATS."""
    return ok(Health(nats=bus.connected))


@router.get(
    "/readyz",
    response_model=Envelope[Ready],
    responses={503: {"model": ErrorBody, "description": "TY0010: a dependency is unreachable (detail)"}},
)
async def readyz(bus: BusDep, request: Request) -> Envelope[Ready]:
    """Ready to serve: views loaded, NATS connected and JetStream answering; otherwise 503 TY0010
    naming what is not."""
    return ok(await health.readiness(bus, getattr(request.app.state, "views", None)))
