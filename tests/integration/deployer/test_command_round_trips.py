"""How many NATS round trips the deployer spends on a create, against the real nats-server (the bus
counts them): the job, the machine and the name's claim are read at once, and the new desired key is
created without a read, so the agent is nudged after two. A redelivered create has one effect."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest_asyncio

from tests.support import eventually
from tests.support.factories import command, name, node_record
from tingyu.common import subjects
from tingyu.common.bus import Bus
from tingyu.common.claims import claim_name
from tingyu.common.desired import DesiredStore
from tingyu.common.jobs import JobStore
from tingyu.common.models.containers import ContainerCommand, ContainerOp
from tingyu.common.models.jobs import JobState
from tingyu.common.settings import PlatformSettings
from tingyu.deployer.containers import Commands


@pytest_asyncio.fixture
async def bus(nats_url: str) -> AsyncIterator[Bus]:
    connected = await Bus.connect(PlatformSettings(nats_url=nats_url), "deployer-trips")
    yield connected
    await connected.close()


async def test_a_create_is_two_round_trips_until_the_nudge(bus: Bus) -> None:
    record = node_record()
    node = record.facts.uuid
    await bus.store(subjects.NODES).put(node, record)
    jobs = JobStore(bus)
    commands = Commands(bus, JobStore(bus), job_timeout_s=60)
    at_nudge: list[int] = []

    async def on_nudge(_: object) -> None:
        at_nudge.append(bus.trip.count)

    nudges = await bus.nc.subscribe(subjects.agent_nudge(node), cb=on_nudge)

    async def accepted() -> ContainerCommand:
        """A create as the API accepts it: the job record and the name's claim together."""
        create = command(ContainerOp.CREATE, name("trip"), node_uuid=node)
        await jobs.submit(create, lambda: claim_name(bus, create.name, node, create.job_id, new=True))
        return create

    await commands.handle(await accepted(), None)  # type: ignore[arg-type]  # the stores' handles open
    await eventually(lambda: _holds(len(at_nudge) == 1), timeout=5)

    create = await accepted()
    before = bus.trip.count
    await commands.handle(create, None)  # type: ignore[arg-type]
    # The reads at once, the desired key's create, then (after the nudge) the job's move (read and
    # compare-and-set) and its timer: five, where reading one after another and the key before
    # creating it made eight.
    assert bus.trip.count - before == 5
    await eventually(lambda: _holds(len(at_nudge) == 2), timeout=5)

    stored, revision = await DesiredStore(bus).entry(node, create.name)
    assert stored is not None
    assert stored.job_id == create.job_id
    job = await jobs.get(create.job_id)
    assert job is not None
    assert job.state == JobState.DISPATCHED

    await commands.handle(create, None)  # type: ignore[arg-type]  # redelivered: one effect
    assert (await DesiredStore(bus).entry(node, create.name))[1] == revision
    await nudges.unsubscribe()


async def _holds(condition: bool) -> bool:
    return condition
