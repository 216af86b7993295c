"""API app factory and lifespan: one NATS connection, made at start and drained at stop.

A connection that nats-py gives up on for good (`bus.lost`) ends the process with code 3, so that
its supervisor starts a fresh one; until then `/tingyu/healthz` keeps answering liveness.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import uvicorn
from fastapi import FastAPI

from tingyu.api import console, envelope, metrics, workers
from tingyu.api.audit import Auditor
from tingyu.api.auth import FailureLimiter, Keyring
from tingyu.api.config import ApiSettings, get_settings
from tingyu.api.gate import Actions, Doors, Gate
from tingyu.api.limits import HttpLimits, RequestLimits
from tingyu.api.routes import ROUTERS
from tingyu.api.services.registry import RegistryTokens
from tingyu.api.uploads import reader_threads
from tingyu.api.views import Views
from tingyu.common import joblog
from tingyu.common.bus import Bus
from tingyu.common.service import settings_checked, setup_logging

log = logging.getLogger(__name__)

EXIT_LOST = 3  # also uvicorn's code for a failed start (e.g. NATS never reachable)


async def _when_lost(bus: Bus, on_lost: Callable[[], None] | None) -> None:
    await bus.lost.wait()
    log.critical("api: the NATS connection is lost for good; stopping so that a fresh process starts")
    if on_lost is not None:
        on_lost()


def create_app(settings: ApiSettings | None = None, *, on_lost: Callable[[], None] | None = None) -> FastAPI:
    """The app; `on_lost` is called once if the NATS connection is lost for good (`run` stops the server)."""
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        asyncio.get_running_loop().set_default_executor(reader_threads(settings.max_uploads))
        bus = await Bus.connect(settings.platform, "tingyu-api")
        app.state.bus = bus
        admin_token = settings.admin_token.get_secret_value()
        if not admin_token:
            log.warning("api: no TINGYU_API_ADMIN_TOKEN; only tokens in ty_tokens are accepted")
        app.state.keyring = Keyring(bus, admin_token, settings.token_cache_s)
        app.state.limiter = FailureLimiter(settings.auth_max_failures, settings.auth_failure_window_s)
        app.state.auditor = Auditor(bus)
        app.state.registry_tokens = RegistryTokens.load(bus, settings)
        app.state.views = Views(
            bus,
            settings.jobs_view_size,
            settings.platform.timezone,
            names_capacity=settings.names_view_size,
            reports_capacity=settings.reports_view_size,
        )
        app.state.views.start()
        watch = asyncio.create_task(_when_lost(bus, on_lost), name="api-bus-lost")
        try:
            async with joblog.forwarding("api", bus):  # the records naming a job, to TY_JOBLOG
                yield
        finally:
            watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watch
            await app.state.views.stop()
            await app.state.auditor.close()
            await bus.close()

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
    app.include_router(console.router, prefix=settings.root_path)
    app.include_router(metrics.router)  # /metrics on the API's own port, for Prometheus
    app.mount(f"{settings.root_path}/console", console.Console(settings.console_dir or console.DEFAULT_DIST))
    public_docs = tuple(
        url for url in (app.docs_url, app.openapi_url, app.swagger_ui_oauth2_redirect_url) if url
    )
    doors = Doors.of(settings.root_path, public_docs)
    app.add_middleware(Gate, doors=doors, actions=Actions.of(settings.root_path, ROUTERS))
    app.add_middleware(metrics.RequestMetrics, root=settings.root_path)
    return app


def serve(settings: ApiSettings, sock: socket.socket | None = None) -> int:
    """One server process (on `sock`, shared with the other workers, when given); its exit code."""
    lost: list[bool] = []

    def stop() -> None:
        lost.append(True)
        server.should_exit = True

    config = uvicorn.Config(
        create_app(settings, on_lost=stop),
        host=settings.host,
        port=settings.port,
        log_level="warning",
        timeout_graceful_shutdown=10,
        # The server's own limits sit above the application's, which answer with an envelope.
        http=HttpLimits.configured(settings.head_timeout_s, settings.max_head_bytes),
        loop="uvloop",
        timeout_keep_alive=settings.keep_alive_s,
        ssl_certfile=settings.tls_cert or None,
        ssl_keyfile=settings.tls_key or None,
    )
    server = uvicorn.Server(config)
    with contextlib.suppress(KeyboardInterrupt):
        server.run(sockets=[sock] if sock is not None else None)
    return EXIT_LOST if lost or not server.started else 0


def run() -> None:
    """The API: `TINGYU_API_WORKERS` processes (default: one per core) on one port."""
    with settings_checked("api"):
        settings = get_settings()
    setup_logging("api", settings.platform.log_level)
    count = settings.workers or os.cpu_count() or 1
    sys.exit(serve(settings) if count == 1 else workers.run(settings, count, serve))


if __name__ == "__main__":
    run()
