"""The nodes service alone at fleet size: its memory and CPU while N machines join and beat.

    .venv/bin/python -m bench.core.heartbeats [--nodes 100000] [--period-s 10] [--soak-s 60]

The fleet benchmark's simulator plays every agent (reconciler, desired-state reads, reports) and
needs more of this box than the platform at 100 000 machines; this one sends only what the nodes
service hears from such a fleet, built the way the simulator builds it (`tingyu.sim.machines`
facts, one beat with facts to join, then pre-encoded facts-less beats on `ty.hb.<uuid>`, each
machine once per `--period-s`, from one connection as the `sim` user). Phases: join (every machine
sends its facts, until `ty_nodes` holds them all), soak (steady beats; the service refreshes each
stored heartbeat time once per 60 s lease), then the service is restarted and soaks again (it
loads the fleet from `ty_nodes`). The baseline is the size of what the service keeps: the bytes of
`ty_nodes` (its stream), so the ratio says how many times the stored records the process holds.
"""

from __future__ import annotations

import argparse
import asyncio
import time

import psutil

from bench.harness import platform, report
from tingyu.common import subjects
from tingyu.common.bus import Bus
from tingyu.common.models.nodes import Heartbeat
from tingyu.common.settings import PlatformSettings
from tingyu.nodes import partitions
from tingyu.sim.fleet import encoded_beat
from tingyu.sim.machines import facts, identity

TICK_S = 0.1


class Beats:
    """One connection sending the fleet's heartbeats, a slice of machines per tick."""

    def __init__(self, bus: Bus, count: int) -> None:
        self.bus = bus
        self.uuids = [identity("beats", index).uuid for index in range(count)]
        self.encoded = [encoded_beat(uuid, "") for uuid in self.uuids]  # digest filled in at join
        self.sent = 0

    async def join(self, per_s: int) -> None:
        """Every machine's first beat, with its facts."""
        per_tick = max(1, int(per_s * TICK_S))
        for start in range(0, len(self.uuids), per_tick):
            began = time.monotonic()
            for index in range(start, min(start + per_tick, len(self.uuids))):
                node = facts(identity("beats", index), index)
                digest = node.digest()
                self.encoded[index] = encoded_beat(node.uuid, digest)
                beat = Heartbeat(uuid=node.uuid, facts_digest=digest, facts=node, sent_at=time.time())
                await self.bus.nc.publish(subjects.heartbeat(node.uuid), beat.to_bytes())
                self.sent += 1
            await asyncio.sleep(max(0.0, TICK_S - (time.monotonic() - began)))

    async def steady(self, period_s: float, stop: asyncio.Event) -> None:
        """Facts-less beats, each machine once per `period_s`, until `stop`."""
        ticks = max(1, round(period_s / TICK_S))
        size = -(-len(self.uuids) // ticks)
        tick = 0
        while not stop.is_set():
            began = time.monotonic()
            slot = tick % ticks
            stamp = repr(time.time()).encode()
            for index in range(slot * size, min((slot + 1) * size, len(self.uuids))):
                head, tail = self.encoded[index]
                await self.bus.nc.publish(subjects.heartbeat(self.uuids[index]), head + stamp + tail)
                self.sent += 1
            tick += 1
            await asyncio.sleep(max(0.0, TICK_S - (time.monotonic() - began)))


async def stored(bus: Bus) -> tuple[int, int, int]:
    """(machines, bytes, last sequence) of `ty_nodes`."""
    state = (await bus.js.stream_info(subjects.NODES.stream)).state
    return int(state.messages), int(state.bytes), int(state.last_seq)  # history 1: one message a machine


async def held(bus: Bus) -> None:
    """Wait until the nodes service holds every heartbeat partition."""
    leases = bus.store(subjects.LEASES)
    count = PlatformSettings().heartbeat_partitions
    for _ in range(120):
        records = await leases.items(partitions.PARTITION_PREFIX + ">")
        if sum(record.expires_at > time.time() for record in records.values()) >= count:
            return
        await asyncio.sleep(0.5)
    raise TimeoutError("the nodes service took no heartbeat partitions within a minute")


def rss_mib(process: psutil.Process) -> float:
    return float(process.memory_info().rss) / 2**20


def cpu_s(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


async def soak(
    bus: Bus, beats: Beats, process: psutil.Process, *, period_s: float, seconds: float, label: str
) -> list[str]:
    stop = asyncio.Event()
    sender = asyncio.create_task(beats.steady(period_s, stop))
    me = psutil.Process()
    await asyncio.sleep(min(15.0, seconds / 4))  # settle before the window
    cpu0, own0, sent0, seq0 = cpu_s(process), cpu_s(me), beats.sent, (await stored(bus))[2]
    began = time.monotonic()
    peak = 0.0
    while time.monotonic() - began < seconds:
        await asyncio.sleep(1.0)
        peak = max(peak, rss_mib(process))
    window = time.monotonic() - began
    cpu, own, sent = cpu_s(process) - cpu0, cpu_s(me) - own0, beats.sent - sent0
    machines, size, seq = await stored(bus)
    stop.set()
    await sender
    rss = rss_mib(process)
    lines = [
        report(f"{label}: nodes service RSS at the end", rss, size / 2**20, "MiB", "bytes of ty_nodes"),
        report(
            f"{label}: nodes service RSS peak in the window", peak, size / 2**20, "MiB", "bytes of ty_nodes"
        ),
    ]
    print(
        f"{label}: {machines} machines stored; {sent / window:,.0f} beats/s sent, "
        f"{(seq - seq0) / window:,.0f} record writes/s; nodes service {cpu / window:.0%} of a core, "
        f"this publisher {own / window:.0%} of a core, over {window:.0f} s",
        flush=True,
    )
    return lines


async def run(nodes: int, period_s: float, soak_s: float, join_per_s: int) -> list[str]:
    with platform(("nodes",)) as running:
        bus = await Bus.connect(running.config.admin_settings(), "bench")
        sim = await Bus.connect(
            PlatformSettings(
                nats_url=running.config.nats_url,
                nats_creds=str(running.config.auth.creds("sim")),
                nats_ca=running.config.tls_files()[0],
            ),
            "bench-beats",
        )
        process = psutil.Process(running.procs["nodes"].popen.pid)
        beats = Beats(sim, nodes)
        await held(bus)  # a beat sent before the service listens is lost (core NATS)
        began = time.perf_counter()
        await beats.join(join_per_s)
        for tries in range(1200):  # at most 10 minutes
            if (have := (await stored(bus))[0]) >= nodes:
                break
            if tries % 20 == 19:
                print(f"join: {have} of {nodes} machines stored", flush=True)
            await asyncio.sleep(0.5)
        joined = time.perf_counter() - began
        print(f"join: {nodes} machines stored {joined:.1f} s after the first beat", flush=True)
        print(f"join: nodes service RSS {rss_mib(process):.0f} MiB", flush=True)
        lines = await soak(bus, beats, process, period_s=period_s, seconds=soak_s, label="soak")
        running.restart_hard("nodes")  # a crash: the new process loads the fleet from ty_nodes
        process = psutil.Process(running.procs["nodes"].popen.pid)
        lines += await soak(bus, beats, process, period_s=period_s, seconds=soak_s, label="after a restart")
        await sim.close()
        await bus.close()
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--nodes", type=int, default=100_000)
    parser.add_argument("--period-s", type=float, default=10.0, help="heartbeat period of each machine")
    parser.add_argument("--soak-s", type=float, default=60.0, help="length of each measured window")
    parser.add_argument("--join-per-s", type=int, default=10_000, help="machines joining per second")
    args = parser.parse_args()
    asyncio.run(run(args.nodes, args.period_s, args.soak_s, args.join_per_s))


if __name__ == "__main__":
    main()
