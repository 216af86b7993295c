"""An edge agent connected only to a regional leaf node (deploy/nats/leaf.conf), which links to
the cluster with its own user: the agent joins, is deployed to (Docker really runs it) and
reports; the leaf node is SIGKILLed and brought back, and the agent converges to what was asked
while it was cut off. Behind a leaf node a machine's credential is still only its own: the leaf node
refuses another machine's desired state in the cluster's domain, and a machine revoked in the
cluster is cut off at the leaf node at once."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import docker
import httpx
import nats
import pytest

from tests.integration.common.test_nats_security import new_machine
from tests.support import build_busybox, docker_as, eventually, unique
from tingyu.cli.launcher import JETSTREAM_DOMAIN, ClusterPlatform, port_open
from tingyu.common import subjects
from tingyu.common.auth.enrollment import new_token, revoke_machine
from tingyu.common.auth.permissions import desired_get
from tingyu.common.bus import Bus
from tingyu.common.models.enroll import EnrollRecord, MachineKey

pytestmark = pytest.mark.cluster


async def live_api(apis: list[httpx.AsyncClient]) -> httpx.AsyncClient:
    """An API replica that answers (the cluster test may have killed one)."""
    for api in apis:
        try:
            if (await api.get("/healthz")).status_code == 200:
                return api
        except httpx.HTTPError:
            continue
    raise AssertionError("no API replica answers")


async def final(api: httpx.AsyncClient, jobid: str) -> dict[str, object]:
    async def done() -> dict[str, object] | None:
        info: dict[str, object] = (await api.get("/task/status", params={"jobid": jobid})).json()["info"][0]
        return info if info.get("state") in (3, 4) else None

    return await eventually(done, timeout=120)


async def test_an_agent_behind_a_leaf_node_is_deployed_to_and_converges_after_a_cut(
    cluster: ClusterPlatform,
    cluster_bus: Bus,
    apis: list[httpx.AsyncClient],
    docker_client: docker.DockerClient,
) -> None:
    api = await live_api(apis)
    leaf = cluster.start_leaf("east")
    folder = cluster.config.state_dir / "edge-agent"
    # A machine credential of its own (its own subjects; `$JS.tingyu.API` for its desired state),
    # presented to the leaf node alone, which checks it against the same account. It enrolls through
    # the API with a one-time token, so that the registry's token service knows it too.
    folder.mkdir(parents=True, exist_ok=True)
    token = await new_token(cluster_bus, ttl_s=600.0)
    edge = {
        "TINGYU_NATS_URL": leaf.url,
        "TINGYU_AGENT_STATE_DIR": str(folder),
        "TINGYU_AGENT_ENROLL_TOKEN": token,
    }
    cluster.start_service("agent", edge, label="agent-edge")
    identity = folder / "identity.json"

    async def joined() -> str | None:
        if not identity.exists():
            return None
        uuid = str(json.loads(identity.read_text())["uuid"])
        body = (await api.get("/node/get", params={"name": uuid})).json()
        return uuid if body["code"] == 200 and body["data"][0]["status"] == "Ready" else None

    uuid = await eventually(joined, timeout=60)
    repository = f"{cluster.config.registry}/tyleaf/{unique('edge')}"
    build_busybox(docker_client, repository, "1")
    docker_as(cluster, "imager", "push", f"{repository}:1")
    name = unique("edge")
    item = {"uuid": uuid, "image": repository, "imageversion": "1", "deploymentname": name}
    created = (await api.post("/container/create", json=[item])).json()["data"][0]
    assert created["code"] == 200, created
    assert (await final(api, created["jobid"]))["state"] == 3
    assert docker_client.containers.get(name).labels["tingyu.node"] == uuid
    assert docker_client.containers.get(name).status == "running"

    # the leaf node dies: the agent loses its only connection; a stop is asked meanwhile
    cluster.kill("leaf-east", signal.SIGKILL)
    assert not port_open(leaf.client_port)
    stopped = (await api.post("/container/stop", params={"name": name})).json()["data"][0]
    assert stopped["code"] == 200, stopped
    cluster.start_leaf("east")
    assert (await final(api, stopped["jobid"]))["state"] == 3

    async def not_running() -> bool:
        return docker_client.containers.get(name).status != "running"

    await eventually(not_running, timeout=30)
    deleted = (await api.delete("/container/delete", params={"name": name})).json()["data"][0]
    assert (await final(api, deleted["jobid"]))["state"] == 3
    cluster.kill("agent-edge", signal.SIGTERM)


async def test_behind_a_leaf_node_a_machine_reads_only_its_own_state_and_a_revocation_cuts_it_off(
    cluster: ClusterPlatform, cluster_bus: Bus, tmp_path: Path
) -> None:
    leaf = cluster.start_leaf("west")
    machine, other = new_machine(tmp_path), new_machine(tmp_path)
    nc = await machine.connect(leaf.url, max_reconnect_attempts=1, reconnect_time_wait=0.2)

    # its own desired state through the domain: the leaf node lets the request out (no such key yet)
    with pytest.raises(nats.js.errors.NotFoundError):
        await nc.jetstream(domain=JETSTREAM_DOMAIN).get_msg(
            subjects.DESIRED.stream,
            subject=subjects.DESIRED.prefix + subjects.desired_key(machine.uuid, "web"),
            direct=True,
        )
    others = desired_get(other.uuid, JETSTREAM_DOMAIN).replace("*", "web")
    await nc.publish(others, b"")
    assert await machine.refused(others)

    record = MachineKey(node_uuid=machine.uuid, public_key=machine.public_key, enrolled_at=time.time())
    await cluster_bus.store(subjects.ENROLL).put(
        subjects.machine_key(machine.uuid), EnrollRecord(machine=record)
    )
    # pushed to the cluster; the leaf node's resolver hears it over its system account link
    await revoke_machine(cluster_bus, cluster.config.admin_settings(), machine.uuid)

    async def cut_off() -> bool:
        return nc.is_closed or not nc.is_connected

    await eventually(cut_off, timeout=10)
    with pytest.raises(Exception, match=r"(?i)authorization|revoked"):
        await machine.connect(leaf.url, allow_reconnect=False)
    cluster.kill("leaf-west", signal.SIGTERM)
