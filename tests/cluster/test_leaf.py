"""An edge agent connected only to a regional leaf node (deploy/nats/leaf.conf), which links to
the cluster with its own user: the agent joins, is deployed to (Docker really runs it) and
reports; the leaf node is SIGKILLed and brought back, and the agent converges to what was asked
while it was cut off."""

from __future__ import annotations

import json
import signal

import docker
import httpx
import pytest

from tests.conftest import build_busybox, docker_as, enroll_offline, eventually, unique
from tingyu.cli.launcher import ClusterPlatform, port_open

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
    cluster: ClusterPlatform, apis: list[httpx.AsyncClient], docker_client: docker.DockerClient
) -> None:
    api = await live_api(apis)
    leaf = cluster.start_leaf("east")
    folder = cluster.config.state_dir / "edge-agent"
    # A machine credential of its own (its own subjects; `$JS.tingyu.API` for its desired state),
    # presented to the leaf node alone, which checks it against the same account.
    enroll_offline(folder)
    edge = {"TINGYU_NATS_URL": leaf.url, "TINGYU_AGENT_STATE_DIR": str(folder)}
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
