"""Every router of the API, in the contract's order."""

from __future__ import annotations

from fastapi import APIRouter

from tingyu.api.routes import containers, files, health, images, metering, nodes, remote, rollouts, tasks

ROUTERS: list[APIRouter] = [
    tasks.router,
    containers.router,
    rollouts.router,
    images.router,
    metering.router,
    nodes.router,
    files.router,
    files.downloads,
    remote.router,
    remote.images,
    health.router,
]
