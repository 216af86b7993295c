"""The nodes service as `run_service` runs it (its `setup` and loops), against a real nats-server:
a machine's heartbeats make it Ready in `ty_nodes`, silence makes it NotReady, and the leader
holds the `nodes-leader` lease."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from tests.support import eventually, serving
from tests.support.factories import facts, heartbeat
from tingyu.common import subjects, timefmt
from tingyu.common.bus import Bus
from tingyu.common.models.nodes import NodeRecord, NodeStatus
from tingyu.common.settings import PlatformSettings
from tingyu.nodes import main
from tingyu.nodes.config import NodesSettings


async def test_heartbeats_make_a_machine_ready_and_silence_not_ready(
    nats_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    platform = PlatformSettings(nats_url=nats_url)
    settings = NodesSettings(not_ready_after_s=1.0, lease_s=5.0, leader_ttl_s=2.0, platform=platform)
    monkeypatch.setattr(main, "get_settings", lambda: settings)
    bus = await Bus.connect(platform, "nodes-tests")
    machine = facts()
    beating = asyncio.Event()

    async def beat() -> None:
        while not beating.is_set():
            await bus.emit(subjects.heartbeat(machine.uuid), heartbeat(machine, at=timefmt.now()))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(beating.wait(), 0.2)

    try:
        async with serving("nodes", main.setup):
            beats = asyncio.create_task(beat())
            try:

                async def status() -> NodeStatus | None:
                    record: NodeRecord | None = await bus.store(subjects.NODES).get(machine.uuid)
                    return record.status if record else None

                assert await eventually(status, timeout=30) == NodeStatus.READY

                async def leader() -> bool:
                    lease = await bus.store(subjects.LEASES).get(main.LEASE_NAME)
                    return lease is not None and lease.expires_at > timefmt.now()

                await eventually(leader, timeout=10)
                beating.set()
                await beats

                async def not_ready() -> bool:
                    return await status() == NodeStatus.NOT_READY

                await eventually(not_ready, timeout=30)
                record = await bus.store(subjects.NODES).get(machine.uuid)
                assert record is not None
                assert record.facts == machine
            finally:
                beating.set()
    finally:
        await bus.store(subjects.NODES).delete(machine.uuid)
        await bus.close()
