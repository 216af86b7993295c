"""The fleet simulator against the real platform: simulated machines join, run jobs, fail, go silent."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from nats.aio.msg import Msg
from nats.js import errors as js_errors

from tests.support import eventually, unique
from tests.support.faults import failing_key_reads
from tingyu.common import subjects
from tingyu.common.bus import Bus
from tingyu.common.desired import DesiredStore
from tingyu.common.models.containers import (
    ContainerSpec,
    DesiredContainer,
    DesiredNudge,
    NodeReport,
    PodPhase,
)
from tingyu.common.models.nodes import Heartbeat
from tingyu.common.service import Service
from tingyu.common.settings import PlatformSettings
from tingyu.sim import machines
from tingyu.sim.fleet import Fleet, FleetConfig

IMAGE = "127.0.0.1:5000/tysim/busybox"  # a full reference: the simulated engine never pulls it


@dataclass
class RunningFleet:
    fleet: Fleet
    stop: asyncio.Event
    task: asyncio.Task[None]

    @property
    def uuids(self) -> list[str]:
        return self.fleet.order

    async def halt(self) -> None:
        self.stop.set()
        await self.task


async def start_fleet(bus: Bus, nodes: int, **options: Any) -> RunningFleet:
    config = FleetConfig(nodes=nodes, seed=unique("seed"), **{"heartbeat_s": 1.0, "resync_s": 3.0, **options})
    fleet = Fleet(bus, config)
    service = Service("sim (SIMULATED)", job_logs=False)

    async def run() -> None:
        async with service.stack:
            await fleet.declare(service)
            await service.run()

    return RunningFleet(fleet, service.stop, asyncio.create_task(run()))


async def listed(api: httpx.AsyncClient, uuids: list[str]) -> list[dict[str, Any]]:
    wanted = set(uuids)
    return [n for n in (await api.get("/node/list")).json()["data"] if n["uuid"] in wanted]


async def all_ready(api: httpx.AsyncClient, uuids: list[str]) -> list[dict[str, Any]] | None:
    nodes = await listed(api, uuids)
    ok = len(nodes) == len(uuids) and all(n["status"] == "Ready" for n in nodes)
    return nodes if ok else None


def item(uuid: str, name: str) -> dict[str, Any]:
    return {
        "uuid": uuid,
        "image": IMAGE,
        "imageversion": "1",
        "deploymentname": name,
        "requestscpu": 0.1,
        "requestsmemory": 16,
        "limitscpu": 0.5,
        "limitsmemory": 64,
    }


async def job_reaches(api: httpx.AsyncClient, jobid: str, state: int) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        info: dict[str, Any] = (await api.get("/task/status", params={"jobid": jobid})).json()["info"][0]
        return info if info["state"] == state else None

    return await eventually(check, timeout=30)


@pytest.fixture
async def fleet(api: httpx.AsyncClient, bus: Bus) -> AsyncIterator[RunningFleet]:
    running = await start_fleet(bus, 50, start_latency_s=0.05)
    await eventually(lambda: all_ready(api, running.uuids), timeout=40)
    yield running
    await running.halt()


async def test_fleet_joins_marked_simulated_with_area_operator_mix(
    api: httpx.AsyncClient, fleet: RunningFleet
) -> None:
    nodes = await listed(api, fleet.uuids)
    assert len(nodes) == 50
    assert all(n["simulated"] is True for n in nodes)
    assert all(n["osimage"] == machines.OS_IMAGE for n in nodes)
    assert len({n["area"] for n in nodes}) == len(machines.AREAS)
    assert {n["operator"] for n in nodes} == {"移动", "联通", "电信"}
    first = machines.identity(fleet.fleet.config.seed, 0)
    assert first.uuid in {n["uuid"] for n in nodes}


async def test_creates_on_simulated_machines_complete_through_the_reconciler(
    api: httpx.AsyncClient, fleet: RunningFleet
) -> None:
    targets = fleet.uuids[:5]
    names = [unique("sim") for _ in targets]
    body = (
        await api.post("/container/create", json=[item(u, n) for u, n in zip(targets, names, strict=True)])
    ).json()
    assert [r["code"] for r in body["data"]] == [200] * len(targets)
    for result in body["data"]:
        await job_reaches(api, result["jobid"], 3)
    runtime = fleet.fleet.runtime
    for uuid, name in zip(targets, names, strict=True):
        [container] = await runtime.list_node(uuid)
        assert (container.name, container.status) == (name, "running")

    deleted = (await api.delete("/container/delete", params={"name": names[0]})).json()
    await job_reaches(api, deleted["data"][0]["jobid"], 3)
    assert await runtime.list_node(targets[0]) == []


async def test_failure_rate_fails_jobs_saying_it_is_simulated(api: httpx.AsyncClient, bus: Bus) -> None:
    failing = await start_fleet(bus, 3, failure_rate=1.0)
    try:
        await eventually(lambda: all_ready(api, failing.uuids), timeout=40)
        name = unique("simfail")
        body = (await api.post("/container/create", json=[item(failing.uuids[0], name)])).json()
        failed = await job_reaches(api, body["data"][0]["jobid"], 4)
        assert "simulated failure" in failed["message"]
    finally:
        await failing.halt()


async def test_stopping_the_simulator_makes_machines_not_ready(api: httpx.AsyncClient, bus: Bus) -> None:
    running = await start_fleet(bus, 10)
    await eventually(lambda: all_ready(api, running.uuids), timeout=40)
    await running.halt()

    async def all_not_ready() -> bool:
        nodes = await listed(api, running.uuids)
        return len(nodes) == 10 and all(n["status"] == "NotReady" for n in nodes)

    await eventually(all_not_ready, timeout=30)


async def test_fleet_on_its_service_beats_reconciles_and_stops(nats_url: str) -> None:
    """Only NATS: the fleet's declared loops beat for every machine (marked simulated), a nudged
    machine reports its desired container, and stopping the service ends every loop."""
    bus = await Bus.connect(PlatformSettings(nats_url=nats_url), "tingyu-tests")
    beats: dict[str, Heartbeat] = {}

    async def on_beat(msg: Msg) -> None:
        beat = Heartbeat.from_bytes(msg.data)
        beats[beat.uuid] = beat

    sub = await bus.nc.subscribe(subjects.HEARTBEATS_DELIVERED, cb=on_beat)
    running = await start_fleet(bus, 8)
    try:
        await eventually(lambda: _all_in(running.uuids, beats), timeout=20)
        assert all(beat.simulated for beat in beats.values())
        uuid = running.uuids[3]
        spec = ContainerSpec(image=IMAGE, imageversion="1", image_ref=f"{IMAGE}:1")
        desired = DesiredContainer(name=unique("sim"), spec=spec, job_id=unique("job"), created_at=0.0)
        revision = await DesiredStore(bus).put(uuid, desired)
        await bus.emit(subjects.agent_nudge(uuid), DesiredNudge(name=desired.name, revision=revision))

        async def running_there() -> bool:
            try:
                msg = await bus.js.get_last_msg(subjects.REPORTS.name, subjects.report(uuid))
            except js_errors.NotFoundError:
                return False
            report = NodeReport.from_bytes(msg.data or b"")
            entry = report.containers.get(desired.name)
            return entry is not None and entry.phase == PodPhase.RUNNING

        await eventually(running_there, timeout=20)
        await asyncio.wait_for(running.halt(), 5)  # well within the service's stop grace
        assert running.fleet.stats.passes >= len(running.uuids)
    finally:
        running.stop.set()
        await sub.unsubscribe()
        await bus.close()


async def _all_in(uuids: list[str], beats: dict[str, Heartbeat]) -> bool:
    return all(uuid in beats for uuid in uuids)


async def test_a_platform_nudge_is_served_before_queued_resyncs(nats_url: str) -> None:
    """Machines share the process's pass workers: a job's nudge must not wait behind every
    machine's resync (a real agent runs its own loop), so it goes ahead of them."""
    bus = await Bus.connect(PlatformSettings(nats_url=nats_url), "tingyu-tests")
    running = await start_fleet(bus, 40, workers=1, resync_s=3600.0)
    fleet = running.fleet
    try:
        await eventually(lambda: _passes_at_least(fleet, 40), timeout=30)
        uuid = running.uuids[-1]
        spec = ContainerSpec(image=IMAGE, imageversion="1", image_ref=f"{IMAGE}:1")
        desired = DesiredContainer(name=unique("sim"), spec=spec, job_id=unique("job"), created_at=0.0)
        revision = await DesiredStore(bus).put(uuid, desired)
        passes_at_report: list[int] = []

        async def on_report(msg: Msg) -> None:
            if desired.name in NodeReport.from_bytes(msg.data).containers:
                passes_at_report.append(fleet.stats.passes)

        sub = await bus.nc.subscribe(subjects.report(uuid), cb=on_report)
        before = fleet.stats.passes
        for other in running.uuids:
            for _ in range(fleet.machines[other].agent.full_read_every):  # one of them is its listing
                fleet.machines[other].agent.resync_period()
            fleet.nudge(other, light=True)  # 40 listing passes queued as resyncs, the job's machine last
        await bus.emit(subjects.agent_nudge(uuid), DesiredNudge(name=desired.name, revision=revision))

        await eventually(lambda: _some(passes_at_report), timeout=20)
        await sub.unsubscribe()
        assert passes_at_report[0] - before <= 3  # the pass under way, then the job's machine
        await eventually(lambda: _passes_at_least(fleet, before + 40), timeout=30)  # resyncs still run
    finally:
        await running.halt()
        await bus.close()


async def _passes_at_least(fleet: Fleet, count: int) -> bool:
    return fleet.stats.passes >= count


async def _some(values: list[int]) -> bool:
    return bool(values)


async def test_keys_a_failed_read_left_are_read_at_the_next_resync(
    nats_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A machine whose nudged key read failed (here: its direct get times out once) holds that key
    to read again; its simulated engine has not changed, yet its next resync must read the key
    rather than be skipped as idle."""
    bus = await Bus.connect(PlatformSettings(nats_url=nats_url), "tingyu-tests")
    running = await start_fleet(bus, 4, resync_s=1.0)
    fleet = running.fleet
    try:
        await eventually(lambda: _passes_at_least(fleet, 4), timeout=30)
        uuid = running.uuids[2]
        agent = fleet.machines[uuid].agent
        spec = ContainerSpec(image=IMAGE, imageversion="1", image_ref=f"{IMAGE}:1")
        desired = DesiredContainer(name=unique("sim"), spec=spec, job_id=unique("job"), created_at=0.0)
        revision = await DesiredStore(bus).put(uuid, desired)
        failing_key_reads(monkeypatch, [TimeoutError("a slow direct get")])
        await bus.emit(subjects.agent_nudge(uuid), DesiredNudge(name=desired.name, revision=revision))
        await eventually(lambda: _key_read_failed(fleet), timeout=10)
        assert not agent.owes_full_read  # one failure owes no listing: only that key, again

        async def running_there() -> bool:
            found = await fleet.runtime.find(uuid, desired.name)
            return found is not None and found.status == "running"

        await eventually(running_there, timeout=10)
    finally:
        await running.halt()
        await bus.close()


async def _key_read_failed(fleet: Fleet) -> bool:
    return fleet.reads["failed key reads"] > 0
