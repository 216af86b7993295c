"""Abuse of the node registry: a corrupt record, and an agent that starts before the nodes service."""

from __future__ import annotations

import asyncio
import contextlib
import signal

import httpx
import pytest

from tests.support import eventually
from tests.support.factories import facts
from tests.support.peer import PeerMachine
from tingyu.agent.heartbeat import heartbeat_loop
from tingyu.cli.launcher import Platform
from tingyu.common import subjects
from tingyu.common.bus import Bus

pytestmark = pytest.mark.e2e


async def ready(api: httpx.AsyncClient, nodename: str) -> bool:
    body = (await api.get("/node/get", params={"name": nodename})).json()
    return body["code"] == 200 and bool(body["data"]) and body["data"][0]["status"] == "Ready"


async def test_a_corrupt_record_is_skipped_and_the_registry_keeps_working(
    api: httpx.AsyncClient, bus: Bus, platform: Platform
) -> None:
    nodes = bus.store(subjects.NODES)
    before = PeerMachine(bus)
    before.start()
    await eventually(lambda: ready(api, before.facts.nodename), timeout=20)
    corrupt = facts().uuid
    await bus.js.publish(nodes.spec.prefix + corrupt, b'{"facts": {"uuid": 42}, "not": "a node record"')
    after = PeerMachine(bus)
    try:
        platform.kill("nodes", signal.SIGKILL)
        platform.start_service("nodes")
        after.start()
        # A new machine registers: the restarted service is running and leading despite the record.
        await eventually(lambda: ready(api, after.facts.nodename), timeout=40)
        assert await ready(api, before.facts.nodename)
        listing = (await api.get("/node/list")).json()
        assert listing["code"] == 200, listing
        listed = {node["uuid"] for node in listing["data"]}
        assert {before.uuid, after.uuid} <= listed
        assert corrupt not in listed
        assert platform.procs["nodes"].popen.poll() is None
    finally:
        await before.stop()
        await after.stop()
        await nodes.delete(corrupt)


async def test_a_machine_is_ready_within_one_heartbeat_when_the_nodes_service_starts_after_it(
    api: httpx.AsyncClient, bus: Bus, platform: Platform
) -> None:
    """Its facts rode on a first beat nobody heard; the next beats carry none (facts_every is large)."""
    node = facts()
    probe = PeerMachine(bus)  # beats with facts every time: Ready as soon as the service writes
    stop = asyncio.Event()
    platform.kill("nodes", signal.SIGKILL)
    agent = asyncio.create_task(
        heartbeat_loop(bus, node.uuid, lambda: node, stop, every_s=1.0, facts_every=1000)
    )
    try:
        await asyncio.sleep(2.5)  # the facts beat and two plain beats go unheard
        assert not await ready(api, node.nodename)
        platform.start_service("nodes")
        probe.start()
        await eventually(lambda: ready(api, probe.facts.nodename), timeout=40)
        started = asyncio.get_running_loop().time()
        await eventually(lambda: ready(api, node.nodename), timeout=10, every=0.1)
        assert asyncio.get_running_loop().time() - started < 2.5  # one beat (1 s), plus the write
    finally:
        stop.set()
        with contextlib.suppress(asyncio.CancelledError):
            await agent
        await probe.stop()
