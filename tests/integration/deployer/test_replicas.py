"""Two replicas of the deployer and of the nodes service on a platform of the test's own: the leader of
each is killed in the middle of a rollout; the other takes the lease once it expires (not before, and
within its TTL), and the rollout finishes with each container upgraded exactly once."""

from __future__ import annotations

import asyncio
import signal
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio

from tests.integration.api.test_rollouts_api import Fleet, accepted, job_info, wait_job
from tests.support import FAST_ENV, bearer, eventually, trusted
from tingyu.cli.launcher import Platform, PlatformConfig, free_port, http_ok, wait_until
from tingyu.common import subjects
from tingyu.common.bus import Bus
from tingyu.common.leases import holder_pid
from tingyu.common.models.leases import LeaseRecord
from tingyu.common.settings import PlatformSettings

pytestmark = pytest.mark.faults

LEASE_S = 3.0
REPLICA_ENV = {
    **FAST_ENV,
    "TINGYU_NODES_LEADER_TTL_S": str(LEASE_S),
    "TINGYU_DEPLOYER_ROLLOUT_LEASE_S": str(LEASE_S),
}
# (lease name, the longest tick between two tries)
NODES = ("nodes-leader", 1.0)
ROLLOUTS = ("rollouts", float(FAST_ENV["TINGYU_DEPLOYER_ROLLOUT_TICK_S"]))


@pytest.fixture(scope="module")
def replicas() -> Iterator[Platform]:
    """nats-server, two nodes services, two deployers and the API; no agent, no registry."""
    with tempfile.TemporaryDirectory(prefix="tingyu-replicas-") as folder:
        config = trusted(
            PlatformConfig(
                state_dir=Path(folder),
                nats_port=free_port(),
                api_port=free_port(),
                extra_env=REPLICA_ENV,
                colour=False,
                log_file=Path(folder) / "platform.log",
            )
        )
        platform = Platform(config)
        try:
            platform.start_nats()
            for label in ("nodes-a", "nodes-b"):
                platform.start_service("nodes", label=label)
            for label in ("deployer-a", "deployer-b"):
                platform.start_service("deployer", label=label)
            platform.start_service("api")
            wait_until(lambda: http_ok(f"{config.api_url}/healthz"), 60, "api")
            yield platform
        finally:
            platform.stop()


@pytest_asyncio.fixture(scope="module")
async def replica_api(replicas: Platform) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=replicas.config.api_url, timeout=30.0, headers=bearer()) as client:
        yield client


@pytest_asyncio.fixture(scope="module")
async def replica_bus(replicas: Platform) -> AsyncIterator[Bus]:
    bus = await Bus.connect(PlatformSettings(nats_url=replicas.config.nats_url), "tingyu-tests")
    yield bus
    await bus.close()


async def lease(bus: Bus, name: str) -> LeaseRecord | None:
    return await bus.store(subjects.LEASES).get(name)


async def kill_holder(platform: Platform, bus: Bus, which: tuple[str, float]) -> LeaseRecord:
    """SIGKILL the process that holds a lease (its process id is in the holder's name); return the
    lease as it was left."""
    name, _ = which
    old = await eventually(lambda: lease(bus, name), timeout=20)
    label = platform.label_of(old.holder)
    assert label is not None, f"no process of this platform holds {name}: {old.holder}"
    platform.kill(label, signal.SIGKILL)
    killed = await lease(bus, name)
    assert killed is not None
    return killed


async def lease_moved(bus: Bus, which: tuple[str, float], killed: LeaseRecord) -> str:
    """Wait until another replica holds the lease; return the new holder.

    Its first record must start after the old one expired (never two leaders) and within one tick
    of it (the lease moves within its TTL of the last renewal)."""
    name, tick = which
    first: LeaseRecord | None = None

    async def moved() -> bool:
        nonlocal first
        record = await lease(bus, name)
        if record is not None and record.holder != killed.holder and first is None:
            first = record
        return first is not None

    await eventually(moved, timeout=LEASE_S + 10, every=0.05)
    assert first is not None
    taken_at = first.expires_at - LEASE_S
    assert taken_at >= killed.expires_at, (first, killed)  # never two leaders at once
    assert taken_at <= killed.expires_at + tick + 1.0, (first, killed)  # allowance for a loaded machine
    return first.holder


async def test_rollout_finishes_when_both_leaders_die_mid_way(
    replicas: Platform, replica_api: httpx.AsyncClient, replica_bus: Bus
) -> None:
    fleet = Fleet(replica_api, replica_bus)
    try:
        for _ in range(4):
            await fleet.machine(2, delay=1.0)
        jobid = await accepted(fleet, 100)

        async def midway() -> dict[str, Any] | None:
            result = (await job_info(replica_api, jobid)).get("result", {})
            return result if 1 <= result.get("updated", 0) < 8 else None

        await eventually(midway, timeout=30, every=0.1)
        killed_rollouts = await kill_holder(replicas, replica_bus, ROLLOUTS)
        killed_nodes = await kill_holder(replicas, replica_bus, NODES)
        now = await job_info(replica_api, jobid)
        assert (now["state"], now["result"]["status"]) == (2, "running"), now  # really mid-way
        deployer_leader, nodes_leader = await asyncio.gather(
            lease_moved(replica_bus, ROLLOUTS, killed_rollouts), lease_moved(replica_bus, NODES, killed_nodes)
        )
        alive = {proc.popen.pid for proc in replicas.procs.values()}  # the other replica of each
        assert holder_pid(deployer_leader) in alive, deployer_leader
        assert holder_pid(nodes_leader) in alive, nodes_leader

        done = await wait_job(replica_api, jobid, 3, timeout=120)
        assert (done["result"]["updated"], done["result"]["failed"]) == (8, 0), done
        # Each container upgraded exactly once: revision 1 (create) + 1 (upgrade), one upgrade job each.
        assert set((await fleet.versions()).values()) == {("2", 2)}
        jobs = await replica_bus.store(subjects.JOBS).values()
        upgrades = sorted(j.deploymentname for j in jobs if j.op == "upgrade")
        assert upgrades == sorted(fleet.names), upgrades
        assert all(j.state == 3 for j in jobs if j.op == "upgrade")
    finally:
        await fleet.close()
