"""Stale and late agent reports against the real deployer: a report of an old revision never completes
a newer job, and a final job never changes, even for a deployer that did not see it finish."""

from __future__ import annotations

import httpx
from bench.core.reports import create_job, drained, running_report
from nats.aio.msg import Msg

from tests.integration.api.test_containers_api import item, job_state, ready_peer, wait_job
from tests.support import eventually, unique
from tests.support.peer import PeerMachine
from tingyu.cli.launcher import Platform
from tingyu.common import subjects, timefmt
from tingyu.common.bus import Bus
from tingyu.common.desired import DesiredStore
from tingyu.common.jobs import JobStore
from tingyu.common.models.containers import (
    ContainerReport,
    ContainerSpec,
    DesiredContainer,
    NodeReport,
    PodPhase,
)
from tingyu.common.models.jobs import JobState
from tingyu.common.names import new_job_id
from tingyu.common.settings import PlatformSettings
from tingyu.deployer.containers.handler import Reports


async def handled(bus: Bus, peer: PeerMachine, report: NodeReport) -> None:
    """Wait until the deployer has taken `report` (stored or ignored) and has nothing left in hand."""
    await eventually(lambda: drained(bus), timeout=20)


async def stored(bus: Bus, peer: PeerMachine) -> NodeReport | None:
    return await bus.store(subjects.REPORTED).get(peer.uuid)


async def test_report_of_an_old_revision_never_completes_the_newer_job(
    api: httpx.AsyncClient, bus: Bus
) -> None:
    peer = await ready_peer(api, bus)
    try:
        name = unique()
        first = (await api.post("/container/create", json=[item(peer.uuid, name)])).json()["data"][0]["jobid"]
        await wait_job(api, first, 1)
        changed = item(peer.uuid, name, env=[{"key": "port", "value": "7000"}])
        second = (await api.put("/container/updateByName", json=[changed])).json()["data"][0]["jobid"]
        await wait_job(api, second, 1)
        overtaken = await wait_job(api, first, 4)
        assert overtaken["message"] == f"superseded by job {second}", overtaken

        # The agent is slow: it reports revision 1 (the create) as running after the update was written.
        stale = await peer.report({name: PodPhase.RUNNING}, revision=1, job_id=first)
        await eventually(lambda: _has(bus, peer, stale), timeout=20)
        await handled(bus, peer, stale)
        assert (await job_state(api, second))["state"] == 1
        assert (await job_state(api, first))["message"] == f"superseded by job {second}"

        # A report of the current revision under the old job id is not this job's either.
        mixed = await peer.report({name: PodPhase.RUNNING}, revision=2, job_id=first)
        await eventually(lambda: _has(bus, peer, mixed), timeout=20)
        await handled(bus, peer, mixed)
        assert (await job_state(api, second))["state"] == 1

        await peer.report({name: PodPhase.RUNNING})
        assert (await wait_job(api, second, 3))["message"] == "success"
    finally:
        await peer.stop()


async def test_final_job_never_changes_on_late_or_contrary_reports(
    api: httpx.AsyncClient, bus: Bus, platform: Platform
) -> None:
    peer = await ready_peer(api, bus)
    try:
        name = unique()
        jobid = (await api.post("/container/create", json=[item(peer.uuid, name)])).json()["data"][0]["jobid"]
        await wait_job(api, jobid, 1)
        done = await peer.report({name: PodPhase.RUNNING})
        await wait_job(api, jobid, 3)

        # Late: written before the last one, delivered after it; the stored state keeps the newer report.
        late = await peer.report({name: PodPhase.FAILED}, "oom", reported_at=done.reported_at - 30)
        await handled(bus, peer, late)
        kept = await stored(bus, peer)
        assert kept is not None
        assert kept.containers[name].phase == PodPhase.RUNNING
        assert (await job_state(api, jobid))["state"] == 3

        # A restarted deployer has no memory of which jobs finished: the stored job itself must hold.
        platform.restart("deployer")
        contrary = await peer.report({name: PodPhase.FAILED}, "crashed later")
        await eventually(lambda: _has(bus, peer, contrary), timeout=30)
        await handled(bus, peer, contrary)
        after = await job_state(api, jobid)
        assert (after["state"], after["message"]) == (3, "success"), after
    finally:
        await peer.stop()


async def _has(bus: Bus, peer: PeerMachine, report: NodeReport) -> bool:
    """The deployer stored exactly this report as the machine's observed state."""
    doc = await stored(bus, peer)
    return doc is not None and doc.seq == report.seq


async def take(reports: Reports, bus: Bus, report: NodeReport) -> None:
    """Hand `report` to `reports` as its consumer does, on the subject of its machine."""
    await reports.handle(report, Msg(bus.nc, subject=subjects.report(report.node_uuid)))


def running(node: str, at: float, seq: int, phase: PodPhase = PodPhase.RUNNING) -> NodeReport:
    """A report of one deployment at rest (its job unknown to the store: nothing to complete)."""
    seen = ContainerReport(name="web", revision=1, job_id=new_job_id(), phase=phase, podname="web-1")
    return NodeReport(node_uuid=node, containers={"web": seen}, reported_at=at, seq=seq)


async def test_reports_are_stored_newest_first_whether_remembered_or_not(bus: Bus) -> None:
    """The deployer writes a machine's report over the last one it stored without reading it, for
    the machines it remembers; a late report never replaces a newer one, remembered or not."""
    reports = Reports(bus, JobStore(bus), stored_limit=2)
    observed = bus.store(subjects.REPORTED)
    machines = [f"tingyu-{unique('')[1:]}{'0' * 22}" for _ in range(3)]
    for at, node in enumerate(machines, start=100):
        await take(reports, bus, NodeReport(node_uuid=node, reported_at=at, seq=1))
    assert list(reports.stored) == machines[1:]  # the first machine is forgotten
    forgotten, remembered = machines[0], machines[2]

    for node in (forgotten, remembered):
        newest = await observed.get(node)
        assert newest is not None
        await take(reports, bus, running(node, newest.reported_at - 50, seq=2))
        assert await observed.get(node) == newest  # the late report lost
        await take(reports, bus, running(node, newest.reported_at + 1, seq=3))
        stored = await observed.get(node)
        assert stored is not None
        assert stored.seq == 3
        assert list(reports.stored)[-1] == node
        assert len(reports.stored) == 2


async def test_an_unchanged_report_is_neither_written_nor_judged_until_the_rewrite_time(bus: Bus) -> None:
    """An agent repeats its report every few minutes: the same deployments as the last report stored
    cost no write; a late report is still refused against the newest time; a change is written,
    and so is an unchanged report once the last write is `REWRITE_S` old."""
    reports = Reports(bus, JobStore(bus))
    kv = await bus.js.key_value(subjects.REPORTED.name)
    node = f"tingyu-{unique('')[1:]}{'0' * 22}"
    first = running(node, 100, seq=1)
    await take(reports, bus, first)
    written = (await kv.get(node)).revision

    again = first.model_copy(update={"reported_at": 200, "seq": 2})
    await take(reports, bus, again)
    assert (await kv.get(node)).revision == written  # not written again
    assert reports.unchanged == 1

    # Late (after the unchanged one, before it in time): refused, though the store says 100.
    late = first.model_copy(update={"reported_at": 150, "seq": 3})
    late.containers["web"] = late.containers["web"].model_copy(update={"phase": PodPhase.FAILED})
    await take(reports, bus, late)
    assert (await kv.get(node)).revision == written
    stored = await bus.store(subjects.REPORTED).get(node)
    assert stored is not None
    assert stored.seq == 1

    changed = late.model_copy(update={"reported_at": 300, "seq": 4})
    await take(reports, bus, changed)
    stored = await bus.store(subjects.REPORTED).get(node)
    assert stored is not None
    assert stored.seq == 4

    reports.REWRITE_S = 0.0  # the last write is now old enough: the unchanged report is written
    await take(reports, bus, changed.model_copy(update={"reported_at": 400, "seq": 5}))
    stored = await bus.store(subjects.REPORTED).get(node)
    assert stored is not None
    assert stored.seq == 5


async def test_jobs_known_final_are_not_read_back_however_many_jobs_the_fleet_has(
    bus: Bus, platform: Platform
) -> None:
    """The job store remembers only its most recent final jobs; a machine's remembered report
    remembers which of its own are final. So a changed report about deployments at rest is one
    write, whatever the job store forgot; after a restart, only the jobs are read; and a new job of
    one of them is still completed."""
    own = await Bus.connect(PlatformSettings(nats_url=platform.config.nats_url), "tingyu-tests-reports")
    try:
        reports = Reports(own, JobStore(own, remember=1))
        node = f"tingyu-{unique('')[1:]}{'0' * 22}"
        entries = [await seeded(bus, node, unique("rest"), JobState.SUCCEEDED) for _ in range(3)]
        first = running_report(node, entries, 100, "")
        await take(reports, own, first)
        assert len(reports.jobs.finished) == 1  # the job store forgot two of the three

        sent = own.nc.stats["out_msgs"]
        await take(reports, own, running_report(node, entries, 200, "restarted"))
        assert own.nc.stats["out_msgs"] - sent == 1  # the report's write, no read
        stored = await bus.store(subjects.REPORTED).get(node)
        assert stored is not None
        assert stored.reported_at == 200

        # A restarted deployer remembers nothing: it reads the stored report (to write over it) and
        # the three jobs, which are final, so the deployments themselves are not read.
        restarted = Reports(own, JobStore(own, remember=1))
        sent = own.nc.stats["out_msgs"]
        await take(restarted, own, running_report(node, entries, 250, "restarted again"))
        assert own.nc.stats["out_msgs"] - sent == 2 + 3

        # The first deployment is updated: its new job is read, judged and completed.
        entries[0] = await seeded(bus, node, entries[0].name, JobState.DISPATCHED)
        await take(restarted, own, running_report(node, entries, 300, ""))
        job = await bus.store(subjects.JOBS).get(entries[0].job_id)
        assert job is not None
        assert (job.state, job.message) == (JobState.SUCCEEDED, "success")
    finally:
        await own.close()


async def seeded(bus: Bus, node: str, name: str, state: JobState) -> DesiredContainer:
    """A deployment written into `ty_desired` with a new job in `state`, as the deployer would have
    left it."""
    now = timefmt.now()
    spec = ContainerSpec(image="test/app", imageversion="1", image_ref="test/app:1", limits_memory=64)
    entry = DesiredContainer(name=name, spec=spec, job_id=new_job_id(), created_at=now)
    job = create_job(node, entry, state, now)
    await bus.store(subjects.JOBS).put(job.job_id, job)
    await DesiredStore(bus).put(node, entry)
    return entry
