"""Nudges that carry the revision, against the real nats-server: the agent reads only the key a
nudge names, with its machine's own credential; a late or duplicated nudge costs no read and never
takes the machine back to an older revision; the resync lists every key of the machine.

The agent here reconciles over the simulated engine (`tingyu.sim`): what is under test is how it
learns its desired state, not Docker."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from nats.aio.msg import Msg

from tests.support import eventually, machine_creds, machine_settings, unique
from tests.support.factories import spec
from tests.support.faults import failing_key_reads
from tingyu.agent import agent as machine_loops
from tingyu.agent.agent import KEY_READ_TRIES, READ_BACKOFF_S, SERVED_TRIES, Agent
from tingyu.agent.identity import Identity
from tingyu.agent.reconciler import Reconciler
from tingyu.common import subjects
from tingyu.common.bus import Bus, serve_by_subject
from tingyu.common.bus.responders import Reply
from tingyu.common.desired import DesiredStore, migrate
from tingyu.common.errors import InvalidParameter, Unavailable
from tingyu.common.models.containers import (
    DesiredContainer,
    DesiredListingRequest,
    DesiredNudge,
    DesiredState,
    NodeDesired,
    PodPhase,
)
from tingyu.common.names import new_node_identity
from tingyu.common.settings import PlatformSettings
from tingyu.deployer.containers import Listings
from tingyu.sim import machines
from tingyu.sim.runtime import SimRuntime


@pytest_asyncio.fixture
async def admin(nats_url: str) -> AsyncIterator[Bus]:
    bus = await Bus.connect(PlatformSettings(nats_url=nats_url), "nudge-tests")
    yield bus
    await bus.close()


@pytest_asyncio.fixture(params=["served", "by itself"])
async def listing(request: pytest.FixtureRequest, admin: Bus) -> AsyncIterator[str]:
    """How the agent's listings are made: answered by a deployer (its `Listings` responder), or,
    with no deployer answering, by the machine's own consumer."""
    responder = None
    if request.param == "served":
        answer = Listings(admin).answer
        responder = await serve_by_subject(admin, subjects.DESIRED_LISTING_ALL, DesiredListingRequest, answer)
    yield request.param
    if responder is not None:
        await responder.close()


@pytest_asyncio.fixture
async def agent(nats_url: str, tmp_path: Path) -> AsyncIterator[Agent]:
    """An agent on its machine's own credential, listening for its nudges (passes run by the test)."""
    uuid, nodename = new_node_identity()
    creds, _ = machine_creds(tmp_path, uuid)
    bus = await Bus.connect(machine_settings(nats_url, creds, uuid), "machine", ensure=False)
    ident = Identity(uuid=uuid, nodename=nodename)
    facts = machines.facts(ident, 0)
    agent = Agent(bus, ident, Reconciler(SimRuntime(), uuid), lambda: facts, simulated=True)
    await agent.start()
    yield agent
    await agent.close()
    await bus.close()


def deployment(name: str, version: str, revision: int) -> DesiredContainer:
    return DesiredContainer(
        name=name, spec=spec(version=version), revision=revision, job_id=unique("job"), created_at=0.0
    )


async def nudged(admin: Bus, agent: Agent, name: str, revision: int) -> None:
    """Send the nudge the deployer sends, and wait until the agent has taken it in."""
    agent.wake.clear()
    await admin.emit(subjects.agent_nudge(agent.uuid), DesiredNudge(name=name, revision=revision))
    await admin.nc.flush()
    await eventually(lambda: holds(agent.wake.is_set()), timeout=5)


def own_listings(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The machines that list with their own consumer from now on, as they do it (each listing
    is still made)."""
    by_itself: list[str] = []
    listing = DesiredStore.listing

    async def counted(self: DesiredStore, uuid: str) -> dict[str, tuple[DesiredContainer, int]]:
        by_itself.append(uuid)
        return await listing(self, uuid)

    monkeypatch.setattr(DesiredStore, "listing", counted)
    return by_itself


async def holds(condition: bool) -> bool:
    return condition


async def test_a_nudge_reads_one_key_and_a_stale_one_reads_nothing(admin: Bus, agent: Agent) -> None:
    store = DesiredStore(admin)
    await agent.sync_once()  # the first pass lists the machine's keys (none yet)
    assert agent.reads == {"keys": 0, "listings": 1, "served": 0, "checks": 0, "stale_nudges": 0} | {
        "failed listings": 0,
        "failed checks": 0,
        "failed key reads": 0,
    }

    name = unique("web")
    first = await store.put(agent.uuid, deployment(name, "1", revision=1))
    await store.put(agent.uuid, deployment(unique("other"), "1", revision=1))  # no nudge: not read
    await nudged(admin, agent, name, first)
    report = await agent.sync_once()
    assert agent.reads["keys"] == 1
    assert report.containers[name].phase == PodPhase.RUNNING
    assert sorted(agent.desired.containers) == [name]

    second = await store.put(agent.uuid, deployment(name, "2", revision=2))
    await nudged(admin, agent, name, second)
    report = await agent.sync_once()
    assert (agent.reads["keys"], report.containers[name].revision) == (2, 2)

    # A late nudge (the first revision) and a duplicate (the second) cost no read and change nothing.
    agent.wake.clear()
    for late in (first, second):
        await admin.emit(subjects.agent_nudge(agent.uuid), DesiredNudge(name=name, revision=late))
    await admin.nc.flush()
    await eventually(lambda: holds(agent.reads["stale_nudges"] == 2), timeout=5)
    assert not agent.wake.is_set()
    report = await agent.sync_once()
    assert agent.reads["keys"] == 2
    assert agent.desired.containers[name].spec.imageversion == "2"
    assert report.containers[name].revision == 2


async def test_a_failed_key_read_reads_that_key_again_by_itself(
    admin: Bus, agent: Agent, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A direct get that fails (here: the first one times out) leaves its key to be read again,
    alone, at the next pass: a slow key read never turns into a listing of every key."""
    store = DesiredStore(admin)
    name = unique("web")
    await store.put(agent.uuid, deployment(name, "1", revision=1))
    await agent.sync_once()  # the first pass lists the machine's keys
    second = await store.put(agent.uuid, deployment(name, "2", revision=2))
    await nudged(admin, agent, name, second)

    failures: list[Exception] = [TimeoutError("a slow direct get")]
    failing_key_reads(monkeypatch, failures)
    report = await agent.sync_once()  # the read fails: the state held is used
    assert report.containers[name].revision == 1
    assert not agent.owes_full_read
    report = await agent.sync_once()  # the next pass (a nudge sent again, the resync period)
    assert report.containers[name].revision == 2
    assert agent.desired.containers[name].spec.imageversion == "2"
    assert (agent.reads["listings"], agent.reads["keys"]) == (1, 2)

    # A key that will not read at all: after KEY_READ_TRIES failures in a row, every key is listed
    # (after the back-off).
    third = await store.put(agent.uuid, deployment(name, "3", revision=3))
    await nudged(admin, agent, name, third)
    failures.extend(TimeoutError("a slow direct get") for _ in range(KEY_READ_TRIES))
    for _ in range(KEY_READ_TRIES):
        await agent.sync_once()
    assert agent.reads["listings"] == 1
    await eventually(lambda: holds(agent.owes_full_read), timeout=READ_BACKOFF_S + 5)
    report = await agent.sync_once()
    assert (agent.reads["listings"], report.containers[name].revision) == (2, 3)


async def test_the_resync_lists_every_key_and_a_removed_key_goes(admin: Bus, agent: Agent) -> None:
    store = DesiredStore(admin)
    names = sorted(unique("web") for _ in range(3))
    for name in names:
        await store.put(agent.uuid, deployment(name, "1", revision=1))
    report = await agent.sync_once()  # the first pass: a full listing
    assert sorted(report.containers) == names

    stopped = deployment(names[0], "1", revision=2).model_copy(update={"state": DesiredState.STOPPED})
    await store.put(agent.uuid, stopped)
    await store.remove(agent.uuid, names[1])
    agent.nudge(full=True)  # what the resync period, a reconnect or an empty nudge asks for
    report = await agent.sync_once()
    assert agent.reads["listings"] == 2
    assert sorted(report.containers) == [names[0], names[2]]
    assert report.containers[names[0]].phase == PodPhase.STOPPED


async def test_an_agent_reads_a_legacy_record_until_the_deployer_splits_it(
    admin: Bus, listing: str, agent: Agent
) -> None:
    """Agents upgraded before the deployer keep their machine as it is: they read the whole-machine
    record under the bare uuid too, and nothing changes for a container when it is split."""
    names = sorted(unique("old") for _ in range(2))
    legacy = NodeDesired(node_uuid=agent.uuid, containers={n: deployment(n, "1", revision=1) for n in names})
    await admin.store(subjects.LEGACY_DESIRED).put(agent.uuid, legacy)
    report = await agent.sync_once()
    assert {n: c.phase for n, c in report.containers.items()} == dict.fromkeys(names, PodPhase.RUNNING)
    ids = {n: c.container_id for n, c in report.containers.items()}

    assert await migrate(admin) >= 1
    agent.nudge(full=True)
    report = await agent.sync_once()
    assert {n: c.container_id for n, c in report.containers.items()} == ids  # the same containers
    assert all(entry.node_uuid == agent.uuid for entry in agent.desired.containers.values())
    assert agent.reads["served"] == (2 if listing == "served" else 0)


async def test_resync_periods_list_every_key_once_per_full_read_period(
    admin: Bus, listing: str, agent: Agent
) -> None:
    """At 100 000 machines a listing every resync period would be 6 700 JetStream API requests a
    second: in between listings (`full_read_s`: 60 periods of 30 s) a resync reconciles against the
    state held. Once per `full_read_s` the machine checks, by the sequence of its newest write (a
    direct get its own credential allows), whether it missed anything, and lists only then."""
    assert agent.full_read_every == 60
    store = DesiredStore(admin)
    await agent.sync_once()  # the first pass lists the machine's keys
    name = unique("web")
    await store.put(agent.uuid, deployment(name, "1", revision=1))  # written without a nudge
    seen = []
    for _ in range(agent.full_read_every):
        agent.resync_period()
        report = await agent.sync_once()
        seen.append(name in report.containers)
    assert (agent.reads["checks"], agent.reads["listings"]) == (1, 2)  # checked once, and listed
    assert seen[-1]  # read at one of the periods
    assert seen == sorted(seen)  # and held from then on
    assert agent.reads["keys"] == 0

    for _ in range(agent.full_read_every):  # nothing written: the check alone
        agent.resync_period()
        await agent.sync_once()
    assert (agent.reads["checks"], agent.reads["listings"]) == (2, 2)

    await store.remove(agent.uuid, name)  # a removal without a nudge is seen too
    for _ in range(agent.full_read_every):
        agent.resync_period()
        report = await agent.sync_once()
    assert (agent.reads["checks"], agent.reads["listings"]) == (3, 3)
    assert name not in report.containers
    assert agent.reads["served"] == (3 if listing == "served" else 0)


async def test_a_failed_listing_waits_out_a_growing_back_off(nats_url: str, tmp_path: Path) -> None:
    """A machine whose listing fails (here: refused, its credential is another machine's) does not
    list again at every pass: it waits a back-off that doubles, so a fleet whose reads failed
    together does not come back together. The platform's own empty nudge is served at once."""
    uuid, _ = new_node_identity()
    creds, _ = machine_creds(tmp_path, uuid)
    other, nodename = new_node_identity()
    bus = await Bus.connect(machine_settings(nats_url, creds, uuid), "machine", ensure=False)
    ident = Identity(uuid=other, nodename=nodename)
    facts = machines.facts(ident, 0)
    agent = Agent(bus, ident, Reconciler(SimRuntime(), other), lambda: facts, simulated=True)
    try:
        for failures in (1, 2):
            with contextlib.suppress(Exception):  # refused: how nats-py says so does not matter here
                await agent.read_desired()
            assert agent.reads["listings"] == failures
            wait = agent.read_backoff_left()
            longest = READ_BACKOFF_S * 2 ** (failures - 1)
            assert longest * 0.5 - 0.5 <= wait <= longest
            assert not agent.owes_full_read  # backing off
            await agent.read_desired()  # a read inside the back-off lists nothing
            assert agent.reads["listings"] == failures
            await eventually(lambda: holds(agent.owes_full_read), timeout=wait + 5)
        with contextlib.suppress(Exception):
            await agent.read_desired()
        assert not agent.owes_full_read
        agent.told(b"")  # the platform asks for a listing (an empty nudge): it need not wait
        assert agent.owes_full_read
    finally:
        await bus.close()


async def test_a_nudged_pass_reports_the_others_as_last_seen_and_an_event_looks_at_all(
    admin: Bus, agent: Agent
) -> None:
    """A pass for one nudged key looks at that deployment's container alone (its cost does not grow
    with the machine's containers); the report still names every deployment. Docker's events make
    the next pass look at every container again."""
    store = DesiredStore(admin)
    names = sorted(unique("web") for _ in range(3))
    for name in names:
        await store.put(agent.uuid, deployment(name, "1", revision=1))
    first = await agent.sync_once()  # the first pass: every key, every container
    runtime = agent.reconciler.runtime
    gone = await runtime.find(agent.uuid, names[2])
    assert gone is not None
    await runtime.remove(gone.id)  # behind the agent's back

    changed = await store.put(agent.uuid, deployment(names[0], "2", revision=2))
    await nudged(admin, agent, names[0], changed)
    report = await agent.sync_once()
    assert sorted(report.containers) == names
    assert report.containers[names[0]].revision == 2
    assert report.containers[names[2]] == first.containers[names[2]]  # as last seen: not looked at
    assert await runtime.find(agent.uuid, names[2]) is None

    agent.look_again()  # what a Docker event (die, destroy, oom, kill) asks for
    report = await agent.sync_once()
    back = await runtime.find(agent.uuid, names[2])
    assert back is not None
    assert report.containers[names[2]].container_id == back.id != gone.id
    assert agent.reads["listings"] == 1  # the desired state itself was not listed again


@pytest.mark.parametrize("listing", ["served"], indirect=True)
async def test_a_served_listing_is_one_cut_of_the_machines_own_keys_and_no_other(
    admin: Bus, listing: str, agent: Agent
) -> None:
    """The deployer answers a machine's listing on the subject that names it, which the machine's
    credential allows alone: another machine's subject is refused by NATS itself, and a subject
    that names no machine by the deployer. The answer's newest write is the one the check reads."""
    store = DesiredStore(admin)
    names = sorted(unique("web") for _ in range(3))
    for name in names:
        await store.put(agent.uuid, deployment(name, "1", revision=1))
    await store.remove(agent.uuid, names.pop())  # a removal: not listed, but its marker is the newest
    found, newest = await DesiredStore(agent.bus).served_listing(agent.uuid, 5.0)
    assert sorted(found) == names
    assert newest == await store.newest(agent.uuid)

    other, _ = new_node_identity()
    await store.put(other, deployment(unique("theirs"), "1", revision=1))
    with pytest.raises(TimeoutError):  # the server does not deliver it: a permissions violation
        await DesiredStore(agent.bus).served_listing(other, 1.0)
    with pytest.raises(InvalidParameter):
        await Listings(admin).answer("ty.rpc.desired.not-a-machine", DesiredListingRequest())


async def test_a_busy_deployer_is_a_failed_read_however_often_it_says_so(
    admin: Bus, agent: Agent, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A deployer that answers "unavailable" (busy with other machines' listings, or its store
    not answering) serves listings: each such answer is a failed read, with its back-off, and
    never makes the machine list with its own consumer, however many come in a row."""
    monkeypatch.setattr(machine_loops, "READ_BACKOFF_S", 0.05)
    asked: list[str] = []

    async def busy(msg: Msg) -> None:
        asked.append(msg.subject)
        answer = Reply(ok=False, code=Unavailable.code, msg=Unavailable.default_msg, detail="busy")
        await msg.respond(answer.to_bytes())

    by_itself = own_listings(monkeypatch)
    await DesiredStore(admin).put(agent.uuid, deployment(unique("web"), "1", revision=1))
    deployer = await admin.nc.subscribe(subjects.DESIRED_LISTING_ALL, cb=busy)
    await admin.nc.flush()
    try:
        for tries in range(1, SERVED_TRIES + 3):
            with pytest.raises(Unavailable):
                await agent.read_desired()
            assert (len(asked), by_itself) == (tries, [])
            assert agent.reads["failed listings"] == tries
            await eventually(lambda: holds(agent.owes_full_read), timeout=agent.read_backoff_left() + 5)
    finally:
        await deployer.unsubscribe()


async def test_a_listing_the_deployer_answers_late_is_a_failed_read_not_a_listing_by_itself(
    admin: Bus, agent: Agent, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A busy deployer answers late: the listing fails, waits out the back-off and is asked of the
    deployer again, without the machine's own consumer (a fleet's consumers would add to the load
    that made it late). Only SERVED_TRIES late answers in a row make the machine list by itself."""
    monkeypatch.setattr(machine_loops, "SERVED_TIMEOUT_S", 0.3)
    asked: list[str] = []

    async def late(msg: Msg) -> None:  # takes the request and never answers
        asked.append(msg.subject)

    by_itself = own_listings(monkeypatch)
    name = unique("web")
    await DesiredStore(admin).put(agent.uuid, deployment(name, "1", revision=1))
    deployer = await admin.nc.subscribe(subjects.DESIRED_LISTING_ALL, cb=late)
    await admin.nc.flush()
    try:
        for tries in range(1, SERVED_TRIES):
            with pytest.raises(TimeoutError):
                await agent.read_desired()
            assert (len(asked), by_itself) == (tries, [])
            assert (agent.reads["failed listings"], agent.reads["failed checks"]) == (tries, 0)
            assert not agent.owes_full_read  # backing off
            await eventually(lambda: holds(agent.owes_full_read), timeout=agent.read_backoff_left() + 5)
        desired, read = await agent.read_desired()
        assert (len(asked), by_itself) == (SERVED_TRIES, [agent.uuid])
        assert read
        assert desired is not None
        assert name in desired.containers
    finally:
        await deployer.unsubscribe()
