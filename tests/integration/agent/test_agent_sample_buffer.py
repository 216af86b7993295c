"""The agent's sample buffer while NATS is down (real nats-server, Docker Engine, metering ingest and
chDB): samples taken during an outage, by a running agent or one restarted during it, reach metering
after NATS is back, at the time they were taken and named from the desired state on disk."""

from __future__ import annotations

import asyncio
import contextlib
import math
import signal
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import docker
import pytest
from prometheus_client import REGISTRY

from tests.integration.agent.test_agent_lifecycle import (
    agent_settings,
    make_desired,
    make_spec,
    put_desired,
    remove_node_containers,
    reported,
    run_agent,
)
from tests.integration.conftest import nats_only
from tests.support import enroll_offline, eventually, unique
from tingyu.agent.config import AgentSettings
from tingyu.cli.launcher import Platform
from tingyu.common.bus import Bus
from tingyu.common.models.containers import PodPhase
from tingyu.common.settings import PlatformSettings
from tingyu.metering.config import DEFAULT_SCHEMA, MeteringSettings
from tingyu.metering.ingest import Ingest
from tingyu.metering.store import ClickHouse

pytestmark = pytest.mark.faults

BUFFERED = "tingyu_agent_sample_batches_buffered"
OUTAGE_BATCHES = 6  # the outage lasts until the agent holds this many batches (3 s at 0.5 s)


@pytest.fixture(autouse=True)
def fast_sampling(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TINGYU_AGENT_SAMPLE_S", "0.5")
    monkeypatch.setenv("TINGYU_AGENT_SAMPLE_READINGS", "1")  # a batch per reading: counted below
    monkeypatch.setenv("TINGYU_AGENT_PUBLISH_TIMEOUT_S", "2")


@dataclass
class Machine:
    """A nats-server of its own, the platform's side of the bus, and one enrolled agent's settings."""

    nats: Platform
    bus: Bus
    settings: AgentSettings
    uuid: str


@pytest.fixture
async def machine(tmp_path: Path, engine: docker.DockerClient) -> AsyncIterator[Machine]:
    nats = nats_only(tmp_path)
    bus = await Bus.connect(PlatformSettings(nats_url=nats.config.nats_url), "sample-buffer-tests")
    settings = agent_settings(nats.config.nats_url, tmp_path / "state")
    uuid = enroll_offline(settings.state_dir)
    try:
        yield Machine(nats, bus, settings, uuid)
    finally:
        await bus.close()
        nats.stop()
        remove_node_containers(engine, uuid)


@dataclass(frozen=True)
class Row:
    """One stored sample: its reading time (from its id) and what chDB holds."""

    tick_ms: int
    ts: int
    deploymentname: str
    image: str
    version: str


async def stored_rows(folder: Path, machine: Machine, enough: int, window: tuple[float, float]) -> list[Row]:
    """Run the metering ingest into a fresh chDB until `enough` rows of the machine taken within
    `window` (seconds, both ends excluded) are stored."""
    t0, t1 = window
    uuid = machine.uuid
    platform = PlatformSettings(nats_url=machine.nats.config.nats_url)
    bus = await Bus.connect(platform, "sample-buffer-metering")
    store = ClickHouse.open("", folder / "chdb")
    await store.apply_schema(DEFAULT_SCHEMA)
    stop = asyncio.Event()
    ingest = asyncio.create_task(
        Ingest(bus, store, MeteringSettings(batch_wait_s=0.2, platform=platform)).run(stop)
    )

    async def during_outage() -> list[Row] | None:
        found = await store.rows(
            "SELECT sample_id, toUnixTimestamp(ts), deploymentname, image, version FROM tingyu.samples"
            " FINAL WHERE node_uuid = {n:String}",
            {"n": uuid},
        )
        rows = [Row(int(str(r[0]).split("/")[1]), int(r[1]), str(r[2]), str(r[3]), str(r[4])) for r in found]
        inside = [r for r in rows if t0 * 1000 < r.tick_ms < t1 * 1000]
        return inside if len(inside) >= enough else None

    try:
        return await eventually(during_outage, timeout=60)
    finally:
        stop.set()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(ingest, 10)
        await store.close()
        await bus.close()


async def buffered(at_least: int) -> None:
    """Wait until the agent holds `at_least` batches it could not publish."""

    async def holding() -> bool:
        return (REGISTRY.get_sample_value(BUFFERED) or 0) >= at_least

    await eventually(holding, timeout=30)


def taken_when_stored(rows: list[Row]) -> None:
    """Each row is stored at its reading time (ts is in seconds), once."""
    assert all(row.ts == row.tick_ms // 1000 for row in rows), rows
    assert len({(row.tick_ms, row.deploymentname) for row in rows}) == len(rows)


async def test_samples_of_an_outage_reach_metering_after_nats_is_back(
    tmp_path: Path, machine: Machine
) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(run_agent(stop, machine.settings))
    try:
        await stored_rows(tmp_path / "before", machine, 1, (0, math.inf))

        machine.nats.kill("nats", signal.SIGTERM)
        t0 = time.time()
        await buffered(OUTAGE_BATCHES)
        t1 = time.time()
        machine.nats.start_nats()

        rows = await stored_rows(tmp_path / "after", machine, 4, (t0, t1))
        machine_rows = [r for r in rows if r.deploymentname == ""]
        assert len(machine_rows) >= 4, rows
        taken_when_stored(rows)
        await eventually(_drained, timeout=30)  # the buffer empties once published
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


async def test_an_agent_restarted_offline_samples_from_its_start(
    tmp_path: Path, machine: Machine, engine: docker.DockerClient, image: str
) -> None:
    name = unique("metered")
    # The platform's names for the image (a catalog name and version), not the reference Docker runs.
    catalog, version = unique("tysamples/web"), "7"
    stop = asyncio.Event()
    task = asyncio.create_task(run_agent(stop, machine.settings))
    try:
        await put_desired(
            machine.bus,
            machine.uuid,
            make_desired(name, make_spec(image, image=catalog, imageversion=version)),
        )
        await reported(machine.bus, machine.uuid, name, 1, PodPhase.RUNNING)
        stop.set()
        await asyncio.wait_for(task, 30)

        # NATS goes away and the agent restarts during the outage (a reboot): it samples at once
        machine.nats.kill("nats", signal.SIGTERM)
        t0 = time.time()
        stop = asyncio.Event()
        task = asyncio.create_task(run_agent(stop, machine.settings))
        await buffered(OUTAGE_BATCHES)
        t1 = time.time()
        machine.nats.start_nats()

        rows = await stored_rows(tmp_path, machine, 8, (t0, t1))
        containers = [r for r in rows if r.deploymentname == name]
        assert len(containers) >= 3, rows
        assert {(r.image, r.version) for r in containers} == {(catalog, version)}  # named from the disk
        assert len([r for r in rows if r.deploymentname == ""]) >= 3, rows
        taken_when_stored(rows)
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


async def _drained() -> bool:
    return REGISTRY.get_sample_value(BUFFERED) == 0
