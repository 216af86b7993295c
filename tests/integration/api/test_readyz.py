"""`/tingyu/readyz` answers 503 TY0010 while NATS is away and 200 again once it is back;
`/tingyu/healthz` stays liveness (200) throughout."""

from __future__ import annotations

import signal
from pathlib import Path

import httpx

from tests.integration.conftest import nats_only
from tests.support import eventually
from tingyu.api.config import ApiSettings
from tingyu.api.main import create_app
from tingyu.common.settings import PlatformSettings


async def test_readyz_follows_nats_while_healthz_stays_alive(tmp_path: Path) -> None:
    nats = nats_only(tmp_path)
    try:
        settings = ApiSettings(platform=PlatformSettings(nats_url=nats.config.nats_url))
        app = create_app(settings)
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://api/tingyu", timeout=10
            ) as api,
        ):

            async def answered() -> httpx.Response | None:
                answer = await api.get("/readyz")  # 503 until the views have loaded
                return answer if answer.status_code == 200 else None

            ready = await eventually(answered, timeout=10)
            assert (ready.status_code, ready.json()) == (
                200,
                {"msg": "success", "code": 200, "data": {"nats": True, "jetstream": True}},
            )

            nats.kill("nats", signal.SIGKILL)

            async def refused() -> httpx.Response | None:
                answer = await api.get("/readyz")
                return answer if answer.status_code == 503 else None

            answer = await eventually(refused, timeout=20)
            body = answer.json()
            assert body["code"] == "TY0010"
            assert body["msg"] == "服务暂不可用,请稍后重试"
            assert "nats: not connected" in body["detail"]
            alive = await api.get("/healthz")
            assert (alive.status_code, alive.json()["data"]) == (200, {"nats": False})

            nats.start_nats()  # the same port and store: the client reconnects

            async def ready_again() -> bool:
                return (await api.get("/readyz")).status_code == 200

            await eventually(ready_again, timeout=30)
    finally:
        nats.stop()
