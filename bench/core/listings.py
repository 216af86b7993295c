"""Machines' listings served by the deployer: its CPU per listing.

    .venv/bin/python -m bench.core.listings [--nodes 2000] [--containers 10] [--listings 20000]

Every machine has `--containers` deployments in `ty_desired`. Machines' listings (`ty.rpc.desired.<uuid>`,
what an agent asks at start, after a reconnect and when its check finds a write it has not listed)
are asked of the running deployer, `--concurrency` at once, each for a random machine, and timed;
the deployer's CPU (user + system, read with psutil before and after) is divided by the listings
it answered. The baseline, in the same run: this process's CPU per raw nats-py request of the
last message under one machine's keys (a JetStream direct get of one message), so the ratio is how
many such gets one served listing costs the deployer.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time

import psutil

from bench.core.reports import deployments
from bench.harness import percentile, platform, report
from tingyu.api.concurrency import gather_bounded
from tingyu.common import subjects
from tingyu.common.bus import Bus
from tingyu.common.desired import DesiredStore
from tingyu.sim.machines import identity


async def seed(bus: Bus, nodes: int, containers: int) -> list[str]:
    desired = DesiredStore(bus)
    uuids = [identity("listings", index).uuid for index in range(nodes)]
    await gather_bounded(
        [desired.put(uuid, entry) for uuid in uuids for entry in deployments(uuid, containers)], 256
    )
    return uuids


async def served(bus: Bus, uuids: list[str], listings: int, concurrency: int, containers: int) -> list[float]:
    desired = DesiredStore(bus)
    times: list[float] = []

    async def one() -> None:
        began = time.perf_counter()
        found, _ = await desired.served_listing(random.choice(uuids), 10.0)
        times.append((time.perf_counter() - began) * 1000)
        assert len(found) == containers

    await gather_bounded([one() for _ in range(listings)], concurrency)
    return times


async def raw_gets(bus: Bus, uuids: list[str], gets: int, concurrency: int) -> float:
    """This process's CPU per raw direct get of one key's last message."""
    stream, prefix = subjects.DESIRED.stream, subjects.DESIRED.prefix
    keys = [f"{prefix}{uuid}.*" for uuid in uuids]

    async def one() -> None:
        await bus.nc.request(f"{bus.api_prefix}.DIRECT.GET.{stream}.{random.choice(keys)}", b"", timeout=10.0)

    began = time.process_time()
    await gather_bounded([one() for _ in range(gets)], concurrency)
    return (time.process_time() - began) / gets * 1000


async def run(nodes: int, containers: int, listings: int, concurrency: int) -> None:
    with platform(("deployer",)) as running:
        bus = await Bus.connect(running.config.admin_settings(), "bench")
        uuids = await seed(bus, nodes, containers)
        await asyncio.sleep(2.0)  # the deployer's start (its responders) settles
        await served(bus, uuids, 200, concurrency, containers)  # warm-up
        deployer = psutil.Process(running.procs["deployer"].popen.pid)
        before = deployer.cpu_times()
        began = time.perf_counter()
        times = await served(bus, uuids, listings, concurrency, containers)
        wall = time.perf_counter() - began
        after = deployer.cpu_times()
        cpu_ms = ((after.user - before.user) + (after.system - before.system)) / listings * 1000
        print(
            f"{listings:,} listings of {containers} keys in {wall:.1f} s ({listings / wall:,.0f}/s), "
            f"p50 / p99 {percentile(times, 50):.1f} / {percentile(times, 99):.1f} ms; "
            f"the deployer's CPU {cpu_ms:.3f} ms per listing"
        )
        raw_ms = await raw_gets(bus, uuids, listings, concurrency)
        report(
            f"deployer CPU per served listing ({containers} keys)",
            cpu_ms * 1000,
            raw_ms * 1000,
            "µs",
            "CPU per raw direct get (one message)",
        )
        await bus.close()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--nodes", type=int, default=2000)
    parser.add_argument("--containers", type=int, default=10)
    parser.add_argument("--listings", type=int, default=20000)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    asyncio.run(run(args.nodes, args.containers, args.listings, args.concurrency))


if __name__ == "__main__":
    main()
