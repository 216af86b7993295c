"""API app factory and lifespan: one NATS connection, made at start and drained at stop."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import uvicorn
from fastapi import FastAPI

from tingyu.api import envelope
from tingyu.api.config import ApiSettings, get_settings
from tingyu.api.limits import HeadTimeoutH11, RequestLimits
from tingyu.api.routes import ROUTERS
from tingyu.common.bus import Bus
from tingyu.common.service import setup_logging


def create_app(settings: ApiSettings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.bus = await Bus.connect(settings.platform, "tingyu-api")
        try:
            yield
        finally:
            await app.state.bus.close()

    app = FastAPI(
        title="Tingyu",
        description="Edge container platform for PCDN fleets",
        version="0.1.0",
        docs_url="/tingyu/docs",
        openapi_url="/tingyu/openapi.json",
        lifespan=lifespan,
    )
    envelope.install(app)
    app.add_middleware(RequestLimits, settings=settings)
    for router in ROUTERS:
        app.include_router(router, prefix=settings.root_path)
    return app


def run() -> None:
    settings = get_settings()
    setup_logging("api", settings.platform.log_level)
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level="warning",
        timeout_graceful_shutdown=10,
        # The server's own limits sit above the application's, which answer with an envelope.
        http=HeadTimeoutH11.with_timeout(settings.head_timeout_s),
        h11_max_incomplete_event_size=settings.max_head_bytes,
        timeout_keep_alive=settings.keep_alive_s,
    )


if __name__ == "__main__":
    run()
