"""Heartbeat partitions against a real nats-server: the account's subject mapping puts a beat on
its partition subject, two nodes replicas split the partitions and the survivor of a SIGKILL takes
the dead one's over, and a beat that changes nothing leaves `ty_nodes` untouched."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio
from prometheus_client import REGISTRY

from tests.support import eventually, serving
from tests.support.factories import facts, heartbeat
from tests.support.trust import machine_creds, machine_settings
from tingyu.common import subjects, timefmt
from tingyu.common.bus import Bus
from tingyu.common.models.nodes import NodeRecord, NodeStatus
from tingyu.common.names import new_node_identity
from tingyu.common.settings import PlatformSettings
from tingyu.nodes import main, partitions
from tingyu.nodes.config import NodesSettings

COUNT = subjects.HEARTBEAT_PARTITIONS
TTL_S = 2.0


@pytest_asyncio.fixture
async def bus(nats_url: str) -> AsyncIterator[Bus]:
    bus = await Bus.connect(PlatformSettings(nats_url=nats_url), "partition-tests")
    yield bus
    await clear_partitions(bus)
    await bus.close()


async def clear_partitions(bus: Bus) -> None:
    """Other tests of this session start nodes replicas too: each test starts from no lease."""
    leases = bus.store(subjects.LEASES)
    for key in await leases.items(partitions.WATCHED):
        await leases.delete(key)


async def test_a_machine_beat_arrives_on_its_partition_subject(
    bus: Bus, nats_url: str, tmp_path: Path
) -> None:
    """Published with the machine's own credential on `ty.hb.<uuid>`; nats-server's partition
    matches `subjects.partition_of` (the replicas' own computation) for every machine tried."""
    got: dict[str, str] = {}

    async def keep(msg: object) -> None:
        subject = msg.subject  # type: ignore[attr-defined]
        got[subject.rsplit(".", 1)[1]] = subject

    sub = await bus.nc.subscribe("ty.hb.>", cb=keep)
    await bus.nc.flush()
    machines = [new_node_identity()[0] for _ in range(8)]
    for uuid in machines:
        creds, _ = machine_creds(tmp_path, uuid)
        machine = await Bus.connect(machine_settings(nats_url, creds, uuid), f"m-{uuid}", ensure=False)
        try:
            await machine.nc.publish(subjects.heartbeat(uuid), b"{}")
            await machine.nc.flush()
        finally:
            await machine.close()

    async def all_arrived() -> bool:
        return len(got) == len(machines)

    await eventually(all_arrived, timeout=10)
    await sub.unsubscribe()
    for uuid in machines:
        assert got[uuid] == f"ty.hb.{subjects.partition_of(uuid, COUNT)}.{uuid}"
    assert len({got[uuid].split(".")[2] for uuid in machines}) > 1  # spread, not one partition


@contextlib.contextmanager
def replicas(nats_url: str, count: int, tmp_path: Path) -> Iterator[list[subprocess.Popen[bytes]]]:
    """`count` nodes services as processes, SIGKILLed at the end if still running."""
    env = {
        **os.environ,
        "TINGYU_NATS_URL": nats_url,
        "TINGYU_NODES_LEADER_TTL_S": str(TTL_S),
        "TINGYU_NODES_NOT_READY_AFTER_S": "4",
        "TINGYU_LOG_LEVEL": "WARNING",
    }
    procs = []
    for k in range(count):
        log = (tmp_path / f"nodes-{k}.log").open("wb")
        cmd = [sys.executable, "-m", "tingyu.nodes.main"]
        procs.append(subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT))
    try:
        yield procs
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                proc.wait()


async def holders(bus: Bus) -> Counter[int]:
    """Live partition leases by holder process id."""
    now = timefmt.now()
    leases = await bus.store(subjects.LEASES).items(partitions.WATCHED)
    out: Counter[int] = Counter()
    for key, record in leases.items():
        if key.startswith(partitions.PARTITION_PREFIX) and record.expires_at > now:
            pid = record.holder.rpartition(":")[2].partition(".")[0]
            out[int(pid)] += 1
    return out


async def test_two_replicas_split_the_partitions_and_a_dead_ones_are_taken_over(
    bus: Bus, nats_url: str, tmp_path: Path
) -> None:
    await clear_partitions(bus)
    machine = facts()
    stop = asyncio.Event()

    async def beat() -> None:  # a machine beating throughout; its facts change after the kill
        while not stop.is_set():
            await bus.emit(subjects.heartbeat(machine.uuid), heartbeat(machine, at=timefmt.now()))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.5)

    beats = asyncio.create_task(beat())
    try:
        with replicas(nats_url, 2, tmp_path) as procs:
            pids = {proc.pid for proc in procs}

            async def split() -> bool:
                held = await holders(bus)
                return set(held) == pids and sorted(held.values()) == [COUNT // 2, COUNT // 2]

            await eventually(split, timeout=60)

            async def ready() -> NodeRecord | None:
                record: NodeRecord | None = await bus.store(subjects.NODES).get(machine.uuid)
                return record if record and record.status == NodeStatus.READY else None

            assert await eventually(ready, timeout=30)
            owner = await bus.store(subjects.LEASES).get(
                partitions.partition_key(subjects.partition_of(machine.uuid, COUNT))
            )
            assert owner is not None
            victim = next(p for p in procs if str(p.pid) in owner.holder)
            survivor = next(p for p in procs if p is not victim)
            victim.send_signal(signal.SIGKILL)
            victim.wait()

            async def taken_over() -> bool:
                return await holders(bus) == Counter({survivor.pid: COUNT})

            await eventually(taken_over, timeout=TTL_S * 3 + 5)
            # The survivor hears the machine's partition now: new facts reach the bucket.
            grown = machine.model_copy(update={"cpu": machine.cpu * 2})
            stop.set()
            await beats
            await bus.emit(subjects.heartbeat(machine.uuid), heartbeat(grown, at=timefmt.now()))

            async def updated() -> bool:
                record = await bus.store(subjects.NODES).get(machine.uuid)
                return record is not None and record.facts.cpu == machine.cpu * 2

            await eventually(updated, timeout=10)
            assert await ready()
    finally:
        stop.set()
        beats.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await beats
        await bus.store(subjects.NODES).delete(machine.uuid)


def heartbeats_received() -> float:
    return REGISTRY.get_sample_value("tingyu_heartbeats_total") or 0.0


async def test_an_unchanged_beat_does_not_write_the_bucket(
    bus: Bus, nats_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    await clear_partitions(bus)
    platform = PlatformSettings(nats_url=nats_url)
    settings = NodesSettings(not_ready_after_s=30.0, lease_s=60.0, leader_ttl_s=TTL_S, platform=platform)
    monkeypatch.setattr(main, "get_settings", lambda: settings)
    machine = facts()
    nodes = bus.store(subjects.NODES)
    try:
        async with serving("nodes", main.setup):

            async def stored() -> int:
                await bus.emit(subjects.heartbeat(machine.uuid), heartbeat(machine, at=timefmt.now()))
                _, revision = await nodes.entry(machine.uuid)
                return revision

            first = await eventually(stored, timeout=30)
            before = heartbeats_received()
            for with_facts in (False, True) * 10:  # facts again but the same: no change either
                await bus.emit(subjects.heartbeat(machine.uuid), heartbeat(machine, with_facts=with_facts))

            async def all_heard() -> bool:
                return heartbeats_received() >= before + 20

            await eventually(all_heard, timeout=10)
            assert (await nodes.entry(machine.uuid))[1] == first

            # On its subject, a body that names another machine, or is no beat, changes nothing either.
            changed = machine.model_copy(update={"cpu": machine.cpu * 2})
            other = facts()
            bodies = [
                heartbeat(changed).model_copy(update={"uuid": other.uuid}).to_bytes(),
                heartbeat(other).to_bytes(),
                b"[]",
                b'{"uuid": 7, "facts_digest": "d"}',
                b"\xff",
            ]
            before = heartbeats_received()
            for body in bodies:
                await bus.nc.publish(subjects.heartbeat(machine.uuid), body)

            async def odd_heard() -> bool:
                return heartbeats_received() >= before + len(bodies)

            await eventually(odd_heard, timeout=10)
            assert (await nodes.entry(machine.uuid))[1] == first
            assert await nodes.get(other.uuid) is None

            # The same path does write when the facts change (so the checks above could fail).
            await bus.emit(subjects.heartbeat(machine.uuid), heartbeat(changed))

            async def rewritten() -> bool:
                return (await nodes.entry(machine.uuid))[1] > first

            await eventually(rewritten, timeout=10)
    finally:
        await nodes.delete(machine.uuid)
