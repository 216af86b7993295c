"""Job deadlines on the real platform: a machine that does not converge in time fails its job with
the reason, and a late convergence never reopens it."""

from __future__ import annotations

import signal
from collections.abc import Iterator

import docker
import httpx
import pytest

from tests.e2e.test_containers_e2e import body, finished, inspect
from tests.support import eventually, unique
from tingyu.cli.launcher import Platform
from tingyu.common import subjects
from tingyu.common.bus import Bus
from tingyu.common.models.containers import PodPhase

JOB_TIMEOUT_S = 5


@pytest.fixture
def short_deadline_deployer(platform: Platform) -> Iterator[None]:
    """The session's deployer replaced by one whose jobs time out after a few seconds; put back after."""
    platform.kill("deployer", signal.SIGTERM)
    platform.start_service("deployer", {"TINGYU_DEPLOYER_JOB_TIMEOUT_S": str(JOB_TIMEOUT_S)})
    try:
        yield
    finally:
        platform.kill("deployer", signal.SIGTERM)
        platform.start_service("deployer")


async def observed_quiet(bus: Bus) -> bool:
    """The deployer has handled every agent report published so far."""
    info = await bus.js.consumer_info(subjects.REPORTS.name, subjects.DEPLOYER_REPORTS.durable)
    return info.num_pending == 0 and info.num_ack_pending == 0


@pytest.mark.usefixtures("short_deadline_deployer")
async def test_job_times_out_while_the_agent_is_away_and_stays_failed_when_it_converges(
    *,
    api: httpx.AsyncClient,
    bus: Bus,
    node_uuid: str,
    busybox_ref: tuple[str, str],
    docker_client: docker.DockerClient,
    platform: Platform,
) -> None:
    name = unique("late")
    platform.kill("agent", signal.SIGKILL)
    try:
        # Accepted while the machine still counts as Ready (NotReady comes after 4 s of silence).
        answer = (await api.post("/container/create", json=[body(node_uuid, name, busybox_ref)])).json()
        result = answer["data"][0]
        assert result["code"] == 200, answer
        job = await finished(api, result["jobid"], timeout=60)
        assert job["state"] == 4, job
        assert job["message"] == f"timed out: machine {node_uuid} did not reach Running in time", job
        assert not docker_client.containers.list(all=True, filters={"name": f"^{name}$"})
    finally:
        platform.start_service("agent")

    # The agent comes back, applies the desired state and reports it; the job is final all the same.
    async def running() -> bool:
        containers = docker_client.containers.list(all=True, filters={"name": f"^{name}$"})
        return bool(containers) and bool(inspect(docker_client, name)["State"]["Running"])

    await eventually(running, timeout=60)

    async def reported() -> bool:
        doc = await bus.store(subjects.REPORTED).get(node_uuid)
        seen = doc.containers.get(name) if doc else None
        return seen is not None and seen.job_id == result["jobid"] and seen.phase == PodPhase.RUNNING

    await eventually(reported, timeout=30)
    await eventually(lambda: observed_quiet(bus), timeout=30)
    after = (await api.get("/task/status", params={"jobid": result["jobid"]})).json()["info"][0]
    assert (after["state"], after["message"]) == (4, job["message"]), after
    assert inspect(docker_client, name)["State"]["Running"]

    delete = (await api.delete("/container/delete", params={"name": name})).json()["data"][0]
    assert (await finished(api, delete["jobid"]))["state"] == 3
