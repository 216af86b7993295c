"""Liveness and readiness."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from tingyu.api.deps import BusDep
from tingyu.api.envelope import ok

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz(bus: BusDep) -> dict[str, Any]:
    """Ready when the API is connected to NATS."""
    return ok({"nats": bus.nc.is_connected})
