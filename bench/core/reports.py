"""The deployer's reports consumer alone: how fast it drains a fleet's queue of agents' reports.

    .venv/bin/python -m bench.core.reports [--nodes 5000] [--containers 10] [--in-flight 128]

Every machine has `--containers` deployments at rest in `ty_desired`, each with its own finished
job in `ty_jobs` (as in a fleet whose containers were created one by one through the API). Each
phase publishes one report per machine into `TY_OBSERVED`, as its agent would, with the deployer
running, and times from the first publish until the consumer has nothing pending or in hand:
- first: what the deployer has never seen (after its start): each report is stored, and its
  deployments are read back and judged (their jobs are final, so nothing changes);
- changed: every report differs from the last (a deployment restarted): stored, judged from memory;
- repeated: the same deployments again, as an agent repeats its report every few minutes.
The baseline is the raw store write of the same reports into `ty_observed` from this process, with
as many in flight as the deployer takes at once (`--in-flight`, its `TINGYU_DEPLOYER_REPORTS_BATCH`).
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Awaitable

import nats.errors

from bench.harness import platform, report
from tingyu.api.concurrency import gather_bounded
from tingyu.common import subjects, timefmt
from tingyu.common.bus import Bus
from tingyu.common.desired import DesiredStore
from tingyu.common.models.containers import (
    ContainerReport,
    ContainerSpec,
    DesiredContainer,
    NodeReport,
    PodPhase,
)
from tingyu.common.models.jobs import Job, JobKind, JobState
from tingyu.common.names import new_job_id
from tingyu.sim.machines import identity


def deployments(uuid: str, count: int) -> list[DesiredContainer]:
    spec = ContainerSpec(image="bench/pcdn", imageversion="1", image_ref="bench/pcdn:1", limits_memory=256)
    now = timefmt.now()
    return [
        DesiredContainer(name=f"{uuid[-8:]}-c{c}", spec=spec, job_id=new_job_id(), created_at=now)
        for c in range(count)
    ]


async def seed(bus: Bus, fleet: dict[str, list[DesiredContainer]], in_flight: int) -> None:
    """Each deployment's key and its finished job, written straight into the stores."""
    desired, jobs = DesiredStore(bus), bus.store(subjects.JOBS)
    now = timefmt.now()
    writes: list[Awaitable[object]] = []
    for uuid, entries in fleet.items():
        for entry in entries:
            job = create_job(uuid, entry, JobState.SUCCEEDED, now)
            writes += [jobs.put(job.job_id, job), desired.put(uuid, entry)]
    await gather_bounded(writes, in_flight)


def create_job(uuid: str, entry: DesiredContainer, state: JobState, now: float) -> Job:
    """The create job behind `entry`, in `state`, as the deployer would have left it."""
    return Job(
        job_id=entry.job_id,
        kind=JobKind.CONTAINER,
        op="create",
        state=state,
        message="success" if state == JobState.SUCCEEDED else "",
        deploymentname=entry.name,
        node_uuid=uuid,
        created_at=now,
        updated_at=now,
    )


def running_report(uuid: str, entries: list[DesiredContainer], at: float, message: str) -> NodeReport:
    """The agent's report of `entries` applied and running."""
    seen = {
        entry.name: ContainerReport(
            name=entry.name,
            revision=entry.revision,
            job_id=entry.job_id,
            phase=PodPhase.RUNNING,
            podname=f"{entry.name}-pod",
            message=message,
        )
        for entry in entries
    }
    return NodeReport(node_uuid=uuid, containers=seen, reported_at=at)


def reports(fleet: dict[str, list[DesiredContainer]], restarts: int) -> list[NodeReport]:
    at = time.time()
    return [running_report(uuid, entries, at, f"restarts: {restarts}") for uuid, entries in fleet.items()]


async def reports_pending(bus: Bus) -> int | None:
    """Reports the deployer has not finished with (waiting or in hand); None when JetStream does
    not answer."""
    try:
        info = await bus.js.consumer_info(subjects.REPORTS.name, subjects.DEPLOYER_REPORTS.durable)
    except nats.errors.TimeoutError:
        return None
    return int(info.num_pending) + int(info.num_ack_pending)


async def drained(bus: Bus) -> bool:
    return await reports_pending(bus) == 0


async def phase(bus: Bus, batch: list[NodeReport], in_flight: int) -> float:
    """Reports per second from the first publish until the deployer has taken them all."""
    began = time.perf_counter()
    await gather_bounded([bus.publish(subjects.report(one.node_uuid), one) for one in batch], in_flight)
    while True:
        await asyncio.sleep(0.05)
        if await drained(bus):
            break
    return len(batch) / (time.perf_counter() - began)


async def raw_writes(bus: Bus, batch: list[NodeReport], in_flight: int) -> float:
    """Puts per second of the same reports into `ty_observed` (keys of their own)."""
    store = bus.store(subjects.REPORTED)
    began = time.perf_counter()
    await gather_bounded([store.put(f"{one.node_uuid[:-4]}bare", one) for one in batch], in_flight)
    return len(batch) / (time.perf_counter() - began)


async def run(nodes: int, containers: int, in_flight: int) -> list[str]:
    env = {"TINGYU_DEPLOYER_REPORTS_BATCH": str(in_flight)}
    with platform(("deployer",), **env) as running:
        bus = await Bus.connect(running.config.admin_settings(), "bench")
        fleet = {
            identity("reports", index).uuid: deployments(identity("reports", index).uuid, containers)
            for index in range(nodes)
        }
        began = time.perf_counter()
        await seed(bus, fleet, in_flight)
        print(f"seeded {nodes * containers:,} deployments and jobs in {time.perf_counter() - began:.0f} s")
        while True:  # the deployer's consumer exists once it runs
            try:
                await drained(bus)
                break
            except Exception:
                await asyncio.sleep(0.2)
        lines = []
        for label, restarts in (("first", 0), ("changed", 1), ("repeated", 1)):
            batch = reports(fleet, restarts)
            ours = await phase(bus, batch, in_flight)
            raw = await raw_writes(bus, batch, in_flight)
            lines.append(
                report(
                    f"reports drained, {label} ({nodes:,} machines × {containers})",
                    ours,
                    raw,
                    "reports/s",
                    f"raw ty_observed put, {in_flight} in flight",
                )
            )
        await bus.close()
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--nodes", type=int, default=5000)
    parser.add_argument("--containers", type=int, default=10)
    parser.add_argument("--in-flight", type=int, default=128, help="the deployer's reports in hand at once")
    args = parser.parse_args()
    asyncio.run(run(args.nodes, args.containers, args.in_flight))


if __name__ == "__main__":
    main()
