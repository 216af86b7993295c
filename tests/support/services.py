"""Platform services run in the test's own event loop: a service as `run_service` runs it, and
the API app with a client of it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx

from tests.support.trust import ADMIN_TOKEN, bearer
from tests.support.waiting import eventually
from tingyu.api.config import ApiSettings
from tingyu.api.main import create_app
from tingyu.common.service import Service
from tingyu.common.settings import PlatformSettings


@contextlib.asynccontextmanager
async def serving(name: str, setup: Callable[[Service], Awaitable[None]]) -> AsyncIterator[Service]:
    """The service `name` with its `setup` (its consumers and loops) running until the block ends;
    then it is asked to stop and must exit cleanly (code 0) within 20 s."""
    service = Service(name)

    async def run() -> int:
        async with service.stack:
            await setup(service)
            return await service.run()

    running = asyncio.create_task(run())
    try:
        yield service
    finally:
        service.stop.set()
        assert await asyncio.wait_for(running, 20) == 0  # asked to stop: a clean exit


@contextlib.asynccontextmanager
async def api_in_process(nats_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """The API app in this process (its lifespan: the bus and the views) and an admin client of
    it under `/tingyu`, once it answers ready."""
    settings = ApiSettings(platform=PlatformSettings(nats_url=nats_url), admin_token=ADMIN_TOKEN)
    app = create_app(settings)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://api/tingyu", headers=bearer(), timeout=30
        ) as client,
    ):

        async def ready() -> bool:
            return (await client.get("/readyz")).status_code == 200

        await eventually(ready, timeout=10)
        yield client
