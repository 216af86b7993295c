"""Killing a service or nats-server loses no accepted command or job."""

from __future__ import annotations

import signal
from collections.abc import Awaitable, Callable

import httpx
import pytest

from tests.integration.api.test_containers_api import item, job_state, ready_peer, wait_job
from tests.support import eventually, unique
from tests.support.factories import command
from tingyu.cli.launcher import Platform, port_open
from tingyu.common import subjects
from tingyu.common.bus import Bus
from tingyu.common.models.containers import ContainerCommand, ContainerOp, DesiredState, PodPhase

pytestmark = pytest.mark.faults


async def test_commands_accepted_while_deployer_is_dead_are_applied_after_restart(
    api: httpx.AsyncClient, bus: Bus, platform: Platform
) -> None:
    peer = await ready_peer(api, bus)
    try:
        platform.kill("deployer", signal.SIGKILL)
        names = [unique() for _ in range(5)]
        body = (await api.post("/container/create", json=[item(peer.uuid, n) for n in names])).json()
        jobids = [result["jobid"] for result in body["data"]]
        assert [(await job_state(api, j))["state"] for j in jobids] == [0] * 5  # queued, durable
        platform.start_service("deployer")
        for jobid in jobids:
            await wait_job(api, jobid, 1)
        doc = await peer.desired()
        assert doc is not None
        assert sorted(doc.containers) == sorted(names)
        await peer.report(dict.fromkeys(names, PodPhase.RUNNING))
        for jobid in jobids:
            await wait_job(api, jobid, 3)
    finally:
        if "deployer" not in platform.procs:
            platform.start_service("deployer")
        await peer.stop()


async def test_nats_server_killed_and_restarted_keeps_jobs_and_desired_state(
    api: httpx.AsyncClient, bus: Bus, platform: Platform
) -> None:
    peer = await ready_peer(api, bus)
    try:
        name = unique()
        jobid = (await api.post("/container/create", json=[item(peer.uuid, name)])).json()["data"][0]["jobid"]
        await wait_job(api, jobid, 1)
        platform.restart_hard("nats")
        await eventually(lambda: _async(port_open(platform.config.nats_port)), timeout=30)

        async def answers() -> bool:
            body = (await api.get("/task/status", params={"jobid": jobid})).json()
            return body.get("code") == 200 and body["info"][0].get("state") == 1

        await eventually(answers, timeout=30)
        doc = await eventually(peer.desired, timeout=30)
        assert doc.containers[name].state == DesiredState.RUNNING
        await peer.report({name: PodPhase.RUNNING})
        await wait_job(api, jobid, 3)
    finally:
        await peer.stop()


async def test_restarted_nodes_service_tracks_machines(
    api: httpx.AsyncClient, bus: Bus, platform: Platform
) -> None:
    """The API reads `ty_nodes` directly, so only a change made after the restart proves the new
    nodes service runs: it must take the leader lease, see the machine go silent and come back."""
    peer = await ready_peer(api, bus)
    try:
        platform.kill("nodes", signal.SIGKILL)
        platform.start_service("nodes")
        await peer.stop()
        await eventually(lambda: _status(api, peer.uuid, "NotReady"), timeout=45)
        peer.start()
        await eventually(lambda: _status(api, peer.uuid, "Ready"), timeout=30)
        name = unique()
        body = (await api.post("/container/create", json=[item(peer.uuid, name)])).json()
        assert body["data"][0]["code"] == 200
        await wait_job(api, body["data"][0]["jobid"], 1)
    finally:
        await peer.stop()


async def _status(api: httpx.AsyncClient, uuid: str, status: str) -> bool:
    body = (await api.get("/node/get", params={"name": uuid})).json()
    return body["code"] == 200 and body["data"][0]["status"] == status


async def _async(value: bool) -> bool:
    return value


async def test_same_command_delivered_twice_has_one_effect(api: httpx.AsyncClient, bus: Bus) -> None:
    """A redelivery (same job id, published again under another message id, as after the
    duplicate window) changes nothing: one desired entry, one revision, one job per operation."""
    peer = await ready_peer(api, bus)
    try:
        name = unique()
        jobid = (await api.post("/container/create", json=[item(peer.uuid, name)])).json()["data"][0]["jobid"]
        await wait_job(api, jobid, 1)
        stop_job = (await api.post("/container/stop", params={"name": name})).json()["data"][0]["jobid"]
        await wait_job(api, stop_job, 1)
        stop = command(ContainerOp.STOP, name, node_uuid=peer.uuid).model_copy(update={"job_id": stop_job})
        for attempt in range(3):
            await bus.publish(subjects.container_command(stop_job), stop, msg_id=f"{stop_job}-{attempt}")
        await bus.publish(subjects.container_command(jobid), _original(peer.uuid, name, jobid))
        await eventually(_quiet(bus), timeout=20)
        doc = await peer.desired()
        assert doc is not None
        entry = doc.containers[name]
        assert (entry.revision, entry.state, entry.job_id) == (2, DesiredState.STOPPED, stop_job)
        jobs = [j for j in await bus.store(subjects.JOBS).values() if j.deploymentname == name]
        assert sorted((j.op, j.job_id, j.revision) for j in jobs) == sorted(
            [("create", jobid, 1), ("stop", stop_job, 2)]
        )
        await peer.report({name: PodPhase.STOPPED})
        await wait_job(api, stop_job, 3)
    finally:
        await peer.stop()


def _original(node_uuid: str, name: str, jobid: str) -> ContainerCommand:
    """The create command again, with the job id it was first accepted under."""
    again = command(ContainerOp.CREATE, name, node_uuid=node_uuid)
    return again.model_copy(update={"job_id": jobid})


def _quiet(bus: Bus) -> Callable[[], Awaitable[bool]]:
    """True once the deployer has no command left to process."""

    async def check() -> bool:
        info = await bus.js.consumer_info(subjects.COMMANDS.name, subjects.DEPLOYER_COMMANDS.durable)
        return info.num_pending == 0 and info.num_ack_pending == 0

    return check
