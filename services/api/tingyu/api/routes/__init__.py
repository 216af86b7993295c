"""Every router of the API, in the contract's order."""

from __future__ import annotations

from fastapi import APIRouter

from tingyu.api.routes import (
    audit,
    containers,
    enroll,
    files,
    health,
    images,
    metering,
    nodes,
    registry,
    remote,
    rollouts,
    tasks,
    tokens,
)

ROUTERS: list[APIRouter] = [
    tasks.router,
    containers.router,
    rollouts.router,
    images.router,
    metering.router,
    nodes.router,
    enroll.router,
    files.router,
    files.downloads,
    remote.router,
    remote.images,
    remote.sessions,
    health.router,
    tokens.router,
    audit.router,
    registry.router,
]
