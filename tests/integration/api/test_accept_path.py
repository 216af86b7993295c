"""The accept path of `/container/create` against a real nats-server: at most two NATS round trips
per create (the machine from the view; the job record and the name claim together; the publish),
and every guarantee kept: the job and the claim are stored, the command is durable and
deduplicated, a taken name is refused."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.support.factories import name, node_record
from tingyu.api.auth import BOOTSTRAP
from tingyu.api.config import ApiSettings
from tingyu.api.schemas.containers import ContainerItem
from tingyu.api.services import containers
from tingyu.api.views import Views
from tingyu.common import subjects
from tingyu.common.bus import Bus
from tingyu.common.models.containers import ContainerCommand, ContainerOp
from tingyu.common.models.jobs import JobState
from tingyu.common.settings import PlatformSettings

IMAGE = "127.0.0.1:5000/tytest/busybox"  # a full reference: no catalog read


@pytest.fixture
async def bus(nats_url: str) -> AsyncIterator[Bus]:
    bus = await Bus.connect(PlatformSettings(nats_url=nats_url), "tingyu-tests-accept")
    yield bus
    await bus.close()


@pytest.fixture
async def machine(bus: Bus, views: Views) -> str:
    record = node_record()
    seq = await bus.store(subjects.NODES).put(record.facts.uuid, record)
    assert await views.nodes.reach(seq, timeout=5)
    return record.facts.uuid


def item(uuid: str, deployment: str) -> ContainerItem:
    return ContainerItem(uuid=uuid, image=IMAGE, imageversion="1", deploymentname=deployment)


async def create(bus: Bus, nats_url: str, items: list[ContainerItem]) -> tuple[list[str], list[str], int]:
    """(job ids, refusals, round trips) of one create request."""
    settings = ApiSettings(platform=PlatformSettings(nats_url=nats_url))
    before = bus.trip.count
    results = await containers.write(bus, settings, items, ContainerOp.CREATE, caller=BOOTSTRAP)
    trips = bus.trip.count - before
    return [r.jobid for r in results if r.jobid], [r.message for r in results if r.code != 200], trips


async def test_one_create_costs_two_round_trips_and_keeps_its_guarantees(
    bus: Bus, nats_url: str, machine: str
) -> None:
    deployment = name("acc")
    jobs, refusals, trips = await create(bus, nats_url, [item(machine, deployment)])

    assert (len(jobs), refusals, trips) == (1, [], 2)
    job = await bus.store(subjects.JOBS).get(jobs[0])
    assert job is not None
    assert job.state == JobState.QUEUED
    assert job.deploymentname == deployment
    claim = await bus.store(subjects.NAMES).get(deployment)
    assert claim is not None
    assert (claim.node_uuid, claim.job_id) == (machine, jobs[0])
    stored = await bus.js.get_last_msg(subjects.COMMANDS.name, subjects.container_command(jobs[0]))
    command = ContainerCommand.from_bytes(stored.data or b"")
    assert (command.job_id, command.name, command.op) == (jobs[0], deployment, ContainerOp.CREATE)

    # The same command again is one message in the stream (the job id is its message id).
    seq = await bus.publish(subjects.container_command(jobs[0]), command, msg_id=command.job_id)
    assert seq == stored.seq

    # A taken name is refused.
    again, refusals, _ = await create(bus, nats_url, [item(machine, deployment)])
    assert again == []
    assert refusals == [f'deployments.apps "{deployment}" already exists']


async def test_a_batch_of_creates_overlaps_its_round_trips(bus: Bus, nats_url: str, machine: str) -> None:
    batch = [item(machine, name("acc")) for _ in range(5)]
    jobs, refusals, trips = await create(bus, nats_url, batch)
    assert (len(jobs), refusals) == (5, [])
    assert trips <= 2
