"""A machine's `heartbeattime` over HTTP follows its heartbeats while its record in `ty_nodes` is
written once per lease: the nodes service (as `run_service` runs it) tells the API process when it
heard each machine, and `/node/get` and `/node/list` answer the later of that and the stored time."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import httpx
import pytest

from tests.support import api_in_process, eventually, serving
from tests.support.factories import facts, heartbeat
from tingyu.common import subjects, timefmt
from tingyu.common.bus import Bus
from tingyu.common.settings import PlatformSettings
from tingyu.nodes import main
from tingyu.nodes.config import NodesSettings


@pytest.fixture
async def nodes_service(nats_url: str, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[None]:
    """The nodes service with a lease far longer than the test: a stored heartbeat time never moves."""
    platform = PlatformSettings(nats_url=nats_url)
    settings = NodesSettings(not_ready_after_s=30.0, lease_s=3600.0, heard_every_s=0.3, platform=platform)
    monkeypatch.setattr(main, "get_settings", lambda: settings)
    async with serving("nodes", main.setup):
        yield


@pytest.fixture
async def api(nats_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with api_in_process(nats_url) as client:
        yield client


async def test_heartbeattime_follows_the_beats_heard_though_the_record_is_not_rewritten(
    nats_url: str, nodes_service: None, api: httpx.AsyncClient
) -> None:
    bus = await Bus.connect(PlatformSettings(nats_url=nats_url), "tingyu-tests-node-heartbeats")
    machine = facts()
    store = bus.store(subjects.NODES)
    stop = asyncio.Event()

    async def beat() -> None:
        while not stop.is_set():
            await bus.emit(subjects.heartbeat(machine.uuid), heartbeat(machine, at=timefmt.now()))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.2)

    beats = asyncio.create_task(beat())
    tz = PlatformSettings().timezone
    try:

        async def shown() -> float | None:
            body = (await api.get("/node/get", params={"name": machine.uuid})).json()
            return timefmt.from_wire(body["data"][0]["heartbeattime"], tz) if body["code"] == 200 else None

        async def listed() -> float:
            body = (await api.get("/node/list")).json()
            (node,) = [node for node in body["data"] if node["uuid"] == machine.uuid]
            return timefmt.from_wire(node["heartbeattime"], tz)

        first = await eventually(shown, timeout=30)
        stored, revision = await store.entry(machine.uuid)
        assert stored is not None

        async def moved_on() -> bool:
            at = await shown()
            return at is not None and at >= first + 3

        await eventually(moved_on, timeout=20)
        assert await listed() >= first + 3
        # Nothing was written for it: the time shown is the one heard.
        after, revision_after = await store.entry(machine.uuid)
        assert (after, revision_after) == (stored, revision)
        assert after is not None
        assert after.heartbeattime < first + 2
    finally:
        stop.set()
        await beats
        await store.delete(machine.uuid)
        await bus.close()
