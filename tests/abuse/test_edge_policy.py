"""The edge policy against the real platform: the API refuses the item, and an agent refuses a
desired state forged straight into `ty_desired` before anything reaches Docker."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import docker
import httpx
import pytest
import pytest_asyncio

from tests.abuse.conftest import assert_alive, assert_untouched
from tests.integration.agent.test_agent_lifecycle import (
    inspect,
    make_desired,
    make_spec,
    put_desired,
    remove_node_containers,
    run_agent,
)
from tests.integration.api.test_containers_api import item, ready_peer
from tests.support import build_busybox, enroll_offline, eventually, unique
from tingyu.agent.config import AgentSettings
from tingyu.cli.launcher import Platform
from tingyu.common import subjects
from tingyu.common.bus import Bus
from tingyu.common.models.containers import ContainerReport, PodPhase, Volume
from tingyu.common.settings import PlatformSettings


@pytest.mark.parametrize(
    ("host", "reason"),
    [
        ("/etc", "/etc is never mounted"),
        ("/etc/shadow", "/etc is never mounted"),
        ("/var/run/docker.sock", "never mounted"),
        ("/run/docker.sock", "never mounted"),
        ("/", "root is never mounted"),
        ("/root", "/root is never mounted"),
        ("/var", "/var/run is never mounted"),
        ("/home", "TINGYU_POLICY_HOSTPATH_ALLOW"),
    ],
)
async def test_the_api_refuses_a_forbidden_host_path_per_item(
    api: httpx.AsyncClient, bus: Bus, node_uuid: str, host: str, reason: str
) -> None:
    peer = await ready_peer(api, bus)
    try:
        name, fine = unique("pol"), unique("ok")
        body = [
            item(peer.uuid, name, volumes=[{"hostPath": host, "mountPath": "/host"}]),
            item(
                peer.uuid, fine, volumes=[{"hostPath": "/etc/resolv.conf", "mountPath": "/etc/resolv.conf"}]
            ),
        ]
        answer = (await api.post("/container/create", json=body)).json()
        refused, accepted = answer["data"]
        assert refused["code"] == 500
        assert refused["deploymentname"] == name
        assert reason in refused["message"]
        assert "jobid" not in refused
        assert accepted["code"] == 200, accepted  # the contract's read-only host file is allowed
        await assert_untouched(bus, name)
        await assert_alive(api, node_uuid)
    finally:
        await peer.stop()


async def test_the_api_refuses_mount_options_and_foreign_registries(
    api: httpx.AsyncClient, bus: Bus, node_uuid: str
) -> None:
    peer = await ready_peer(api, bus)
    try:
        name = unique("pol")
        options = item(peer.uuid, name, volumes=[{"hostPath": "/data/a", "mountPath": "/srv:ro"}])
        answer = (await api.post("/container/create", json=[options])).json()
        assert (answer["msg"], answer["code"]) == ("请求格式错误", "TY0001")
        assert "mount options" in answer["detail"]
        foreign = item(peer.uuid, name, image="evil.example.org/pcdn", imageversion="v6.1333")
        refused = (await api.post("/container/create", json=[foreign])).json()["data"][0]
        assert refused["code"] == 500
        assert "evil.example.org" in refused["message"]
        assert "TINGYU_POLICY_REGISTRIES" in refused["message"]
        # inheritUpdate judges names first: an unknown one is refused per item, the image unread ...
        inherit = {"deploymentnames": name, "image": "evil.example.org/pcdn", "imageversion": "1"}
        unknown = (await api.post("/container/inheritUpdate", json=inherit)).json()["data"][0]
        assert (unknown["code"], unknown["message"]) == (500, "Get Deploymentname Fail")
        # ... and for a deployment that exists, the foreign registry refuses the whole request.
        present = unique("pol")
        created = (await api.post("/container/create", json=[item(peer.uuid, present)])).json()
        assert created["data"][0]["code"] == 200, created
        upgrade = {**inherit, "deploymentnames": present}
        foreign_upgrade = (await api.post("/container/inheritUpdate", json=upgrade)).json()
        assert foreign_upgrade["code"] == "TY0003", foreign_upgrade
        assert "evil.example.org" in foreign_upgrade["detail"]
        assert (await api.delete("/container/delete", params={"name": present})).json()["code"] == 200
        await assert_untouched(bus, name)
        await assert_alive(api, node_uuid)
    finally:
        await peer.stop()


# --- the agent -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def local_image(docker_client: docker.DockerClient) -> Iterator[str]:
    """A local busybox tag: present, so the agent never pulls it."""
    reference = build_busybox(docker_client, f"typolicy/{unique('bb')}", "1")
    yield reference
    with contextlib.suppress(docker.errors.APIError):
        docker_client.images.remove(reference, force=True)


@pytest_asyncio.fixture
async def agent_uuid(
    platform: Platform, tmp_path: Path, docker_client: docker.DockerClient
) -> AsyncIterator[str]:
    """A second agent, in this process, on the platform's NATS (its policy from the environment)."""
    settings = AgentSettings(
        platform=PlatformSettings(
            nats_url=platform.config.nats_url, state_dir=tmp_path, registry=platform.config.registry
        ),
        area="南京",
        operator="电信",
        heartbeat_s=0.5,
        resync_s=2.0,
        stop_timeout_s=1.0,
    )
    uuid = enroll_offline(settings.state_dir)  # its identity and its own NATS credential
    stop = asyncio.Event()
    task = asyncio.create_task(run_agent(stop, settings))
    yield uuid
    stop.set()
    await asyncio.wait_for(task, 30)
    remove_node_containers(docker_client, uuid)


async def reported(bus: Bus, uuid: str, name: str, phase: PodPhase) -> ContainerReport:
    """Wait until the machine's observed state (kept by the platform's deployer) shows `name` in `phase`."""

    async def check() -> ContainerReport | None:
        report = await bus.store(subjects.REPORTED).get(uuid)
        entry = report.containers.get(name) if report else None
        return entry if entry and entry.phase == phase else None

    return await eventually(check, timeout=30)


async def test_the_agent_refuses_a_forged_desired_state(
    agent_uuid: str, bus: Bus, docker_client: docker.DockerClient, local_image: str, tmp_path: Path
) -> None:
    escape = tmp_path / "escape"  # under an allowed folder as given, but it leads to /etc
    escape.symlink_to("/etc")
    forged = {
        unique("etc"): [Volume(hostPath="/etc", mountPath="/host-etc")],
        unique("sock"): [Volume(hostPath="/var/run/docker.sock", mountPath="/var/run/docker.sock")],
        unique("dots"): [Volume(hostPath="/tmp/../etc", mountPath="/x")],
        unique("link"): [Volume(hostPath=str(escape), mountPath="/x")],
        unique("opts"): [Volume(hostPath=str(tmp_path), mountPath="/x:rw")],
    }
    foreign = unique("reg")
    fine = unique("fine")
    containers = [
        make_desired(name, make_spec(local_image, volumes=volumes)) for name, volumes in forged.items()
    ]
    containers.append(make_desired(foreign, make_spec(f"evil.example.org/{unique('x')}/pcdn:1")))
    resolv = Volume(hostPath="/etc/resolv.conf", mountPath="/etc/resolv.conf")
    containers.append(make_desired(fine, make_spec(local_image, volumes=[resolv])))
    await put_desired(bus, agent_uuid, *containers)

    for name in [*forged, foreign]:
        failed = await reported(bus, agent_uuid, name, PodPhase.FAILED)
        assert "refused by the edge policy" in failed.message, failed.message
        assert inspect(docker_client, name) is None  # nothing reached Docker
    link = (await reported(bus, agent_uuid, unique_key(forged, "link"), PodPhase.FAILED)).message
    assert "leads to /etc" in link
    # The same agent still runs what the policy allows; the contract's host file is bound read-only.
    await reported(bus, agent_uuid, fine, PodPhase.RUNNING)
    attrs = inspect(docker_client, fine)
    assert attrs is not None
    assert attrs["HostConfig"]["Binds"] == ["/etc/resolv.conf:/etc/resolv.conf:ro"]
    assert attrs["HostConfig"]["Privileged"] is False
    assert not attrs["HostConfig"]["CapAdd"]


def unique_key(forged: dict[str, list[Volume]], prefix: str) -> str:
    return next(name for name in forged if name.startswith(prefix))
