"""The service skeleton: supervised loops restart, leader loops hold their lease, and a NATS
connection that nats-py closed for good ends the service with exit code 3 (to be restarted)."""

from __future__ import annotations

import asyncio
import secrets

from tests.support import eventually
from tingyu.common.leases import Lease
from tingyu.common.service import EXIT_BUS_LOST, Service
from tingyu.common.settings import PlatformSettings


async def _true(value: bool) -> bool:
    return value


async def test_a_failing_loop_is_restarted_and_a_lost_bus_exits_3(nats_url: str) -> None:
    service = Service(f"test{secrets.token_hex(3)}")
    runs: list[int] = []

    async def flaky(stop: asyncio.Event) -> None:
        runs.append(1)
        if len(runs) < 3:
            raise RuntimeError("broken start")
        await stop.wait()

    async with service.stack:
        bus = await service.connect(PlatformSettings(nats_url=nats_url), ensure=False)
        service.loop("flaky", flaky)
        running = asyncio.create_task(service.run())
        await eventually(lambda: _true(len(runs) >= 3), timeout=30)
        assert not running.done()
        # What a hostile client did before subjects were checked: the server refuses the control
        # line and nats-py closes the connection for good.
        await bus.nc.publish("ty." + "x" * 70_000, b"")
        code = await asyncio.wait_for(running, 30)
    assert code == EXIT_BUS_LOST
    assert len(runs) == 3


async def test_a_stop_request_ends_every_loop_with_code_0(nats_url: str) -> None:
    service = Service(f"test{secrets.token_hex(3)}")
    ticks: list[str] = []

    async with service.stack:
        bus = await service.connect(PlatformSettings(nats_url=nats_url), ensure=True)
        first = Lease(bus, f"lease{secrets.token_hex(3)}", ttl_s=5.0, holder="a")
        second = Lease(bus, first.name, ttl_s=5.0, holder="b")

        async def tick_a() -> None:
            ticks.append("a")

        service.leader(first, 0.05, tick_a)
        running = asyncio.create_task(service.run())
        await eventually(lambda: _true(ticks.count("a") >= 3), timeout=30)
        assert not await second.hold()  # held by the first replica
        service.stop.set()
        assert await asyncio.wait_for(running, 15) == 0
    assert set(ticks) == {"a"}
    assert bus.nc.is_closed
