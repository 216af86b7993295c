"""Puts the per-machine containers of a ramp step straight into desired state (at raw KV speed).

Going through the API would take hours for a million containers on this machine; the API and
job path are measured on top of the loaded fleet instead. Every preloaded container belongs to
one job recorded as succeeded, so the deployer's judging of reports stays as cheap as for done jobs.

That job is a fixture written straight into the store of `subjects.JOBS`, not through `JobStore`:
`JobStore.submit` would publish a command for the deployer to carry out, and the preloaded
containers have no command behind them (the deployer only reads the job's final state).
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import nats.errors

from tingyu.common import subjects, timefmt
from tingyu.common.bus import Bus
from tingyu.common.desired import DesiredStore
from tingyu.common.models.containers import ContainerSpec, DesiredContainer, DesiredNudge, NodeDesired
from tingyu.common.models.jobs import Job, JobKind, JobState
from tingyu.common.names import new_job_id

REPOSITORY = "bench/pcdn"


def image(registry: str) -> str:
    """The simulated containers' image, in the platform's own registry (the one the edge policy
    allows, TINGYU_POLICY_REGISTRIES); simulated engines never pull it."""
    return f"{registry}/{REPOSITORY}"


async def preload_job(bus: Bus) -> str:
    now = timefmt.now()
    job = Job(
        job_id=new_job_id(),
        kind=JobKind.CONTAINER,
        op="create",
        state=JobState.SUCCEEDED,
        message="preloaded by the fleet benchmark",
        created_at=now,
        updated_at=now,
    )
    await bus.store(subjects.JOBS).put(job.job_id, job)
    return job.job_id


def desired(uuid: str, index: int, containers: int, job_id: str, ref: str) -> NodeDesired:
    spec = ContainerSpec(image=ref, imageversion="1", image_ref=f"{ref}:1", limits_memory=256)
    now = timefmt.now()
    doc = NodeDesired(node_uuid=uuid)
    for c in range(containers):
        name = f"m{index}-c{c}"
        doc.containers[name] = DesiredContainer(name=name, spec=spec, job_id=job_id, created_at=now)
    return doc


async def put(store: DesiredStore, uuid: str, entry: DesiredContainer, attempts: int = 5) -> int:
    """One key written, again after a timeout (a loaded server answers late, not never)."""
    for _ in range(attempts - 1):
        with contextlib.suppress(nats.errors.TimeoutError):
            return await store.put(uuid, entry)
    return await store.put(uuid, entry)


async def preload(
    bus: Bus,
    uuids: list[tuple[int, str]],
    containers: int,
    ref: str,
    *,
    concurrency: int = 128,
    progress_s: float = 30.0,
) -> None:
    """Write each machine's desired containers and nudge it, as the deployer does: one nudge per
    key, naming it and its revision, so the machine reads that key alone (an empty nudge would
    make every machine list its keys at once). Each machine still lists them once, at its next
    check (its newest write moved), as it would after a change to most of the fleet.
    Prints how far it got every `progress_s` (a million writes take minutes)."""
    job_id = await preload_job(bus)
    desired_store = DesiredStore(bus)
    todo = iter(uuids)
    written = 0

    async def worker() -> None:
        nonlocal written
        for index, uuid in todo:
            for entry in desired(uuid, index, containers, job_id, ref).containers.values():
                revision = await put(desired_store, uuid, entry)  # one key per deployment
                await bus.emit(subjects.agent_nudge(uuid), DesiredNudge(name=entry.name, revision=revision))
                written += 1

    async def progress() -> None:
        start, last = time.perf_counter(), 0
        while True:
            await asyncio.sleep(progress_s)
            now = time.perf_counter() - start
            print(
                f"  preload: {written:,} keys in {now:.0f}s, {(written - last) / progress_s:,.0f}/s lately",
                flush=True,
            )
            last = written

    reporter = asyncio.create_task(progress())
    try:
        await asyncio.gather(*(worker() for _ in range(concurrency)))
    finally:
        reporter.cancel()
