"""The core loop end to end: HTTP API -> NATS -> deployer -> agent -> the real Docker Engine."""

from __future__ import annotations

import signal
from typing import Any

import docker
import httpx

from tests.support import eventually, unique
from tingyu.cli.launcher import Platform


def body(uuid: str, name: str, image: tuple[str, str], **fields: Any) -> dict[str, Any]:
    item: dict[str, Any] = {
        "uuid": uuid,
        "image": image[0],
        "imageversion": image[1],
        "deploymentname": name,
        "env": [{"key": "port", "value": "6555"}],
        "volumes": [{"hostPath": "/tmp", "mountPath": "/storage"}],
        "requestscpu": 0.25,
        "requestsmemory": 16,
        "limitscpu": 0.5,
        "limitsmemory": 64,
    }
    item.update(fields)
    return item


async def finished(api: httpx.AsyncClient, jobid: str, timeout: float = 90) -> dict[str, Any]:
    """Wait until the job is final; return its status entry."""

    async def final() -> dict[str, Any] | None:
        info: dict[str, Any] = (await api.get("/task/status", params={"jobid": jobid})).json()["info"][0]
        return info if info.get("state") in (3, 4) else None

    return await eventually(final, timeout=timeout)


async def create(api: httpx.AsyncClient, item: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = (await api.post("/container/create", json=[item])).json()["data"][0]
    assert result["code"] == 200, result
    return await finished(api, result["jobid"])


def inspect(client: docker.DockerClient, name: str) -> dict[str, Any]:
    attrs: dict[str, Any] = client.api.inspect_container(name)
    return attrs


async def test_create_runs_the_container_as_specified(
    api: httpx.AsyncClient, node_uuid: str, busybox_ref: tuple[str, str], docker_client: docker.DockerClient
) -> None:
    name = unique()
    job = await create(api, body(node_uuid, name, busybox_ref))
    assert job["state"] == 3, job
    attrs = inspect(docker_client, name)
    assert attrs["State"]["Running"]
    host = attrs["HostConfig"]
    assert host["NetworkMode"] == "host"
    assert host["RestartPolicy"]["Name"] == "always"
    assert host["NanoCpus"] == 500_000_000
    assert host["Memory"] == 64 * 1024 * 1024
    assert "/tmp:/storage" in host["Binds"]
    assert "port=6555" in attrs["Config"]["Env"]
    assert attrs["Config"]["Image"] == f"{busybox_ref[0]}:{busybox_ref[1]}"
    info = (await api.post("/container/info", params={"name": name})).json()["data"][0]["data"]
    assert info["podinfo"][0]["podstate"] == "Running"
    await finished(
        api, (await api.delete("/container/delete", params={"name": name})).json()["data"][0]["jobid"]
    )


async def test_stop_start_restart_update_delete(
    api: httpx.AsyncClient, node_uuid: str, busybox_ref: tuple[str, str], docker_client: docker.DockerClient
) -> None:
    name = unique()
    assert (await create(api, body(node_uuid, name, busybox_ref)))["state"] == 3
    first_id = inspect(docker_client, name)["Id"]

    stop = (await api.post("/container/stop", params={"name": name})).json()
    assert (stop["msg"], stop["code"]) == ("停止成功!", 200)
    assert (await finished(api, stop["data"][0]["jobid"]))["state"] == 3
    assert not inspect(docker_client, name)["State"]["Running"]
    info = (await api.post("/container/info", params={"name": name})).json()["data"][0]["data"]
    assert info["podinfo"][0]["podstate"] == "Stopped"

    start = (await api.post("/container/start", params={"name": name})).json()
    assert (await finished(api, start["data"][0]["jobid"]))["state"] == 3
    started = inspect(docker_client, name)["State"]
    assert started["Running"]

    restart = (await api.post("/container/restart", params={"name": name})).json()
    assert (await finished(api, restart["data"][0]["jobid"]))["state"] == 3
    assert inspect(docker_client, name)["State"]["StartedAt"] != started["StartedAt"]

    changed = body(node_uuid, name, busybox_ref, env=[{"key": "port", "value": "7000"}])
    update = (await api.put("/container/updateByName", json=[changed])).json()["data"][0]
    assert (await finished(api, update["jobid"]))["state"] == 3
    recreated = inspect(docker_client, name)
    assert recreated["Id"] != first_id
    assert "port=7000" in recreated["Config"]["Env"]
    got = (await api.post("/container/get", params={"name": name})).json()["data"][0]["data"]
    assert got["env"] == [{"key": "port", "value": "7000"}]

    delete = (await api.delete("/container/delete", params={"name": name})).json()["data"][0]
    assert (await finished(api, delete["jobid"]))["state"] == 3
    assert not docker_client.containers.list(all=True, filters={"name": f"^{name}$"})
    gone = (await api.post("/container/get", params={"name": name})).json()["data"][0]
    assert gone["message"] == f'deployments.apps "{name}" not found'


async def test_inherit_update_moves_to_another_version(
    api: httpx.AsyncClient,
    node_uuid: str,
    busybox_ref: tuple[str, str],
    docker_client: docker.DockerClient,
    platform: Platform,
) -> None:
    from tests.support import build_busybox

    repository, _ = busybox_ref
    build_busybox(docker_client, repository, "2")
    docker_client.images.push(repository, tag="2")
    name = unique()
    assert (await create(api, body(node_uuid, name, busybox_ref)))["state"] == 3
    answer = (
        await api.post(
            "/container/inheritUpdate",
            json={"deploymentnames": name, "image": repository, "imageversion": "2"},
        )
    ).json()
    assert (await finished(api, answer["data"][0]["jobid"]))["state"] == 3
    attrs = inspect(docker_client, name)
    assert attrs["Config"]["Image"] == f"{repository}:2"
    assert "port=6555" in attrs["Config"]["Env"]  # the rest of the spec stayed
    unknown = (
        await api.post(
            "/container/inheritUpdate",
            json={"deploymentnames": unique(), "image": repository, "imageversion": "2"},
        )
    ).json()
    assert unknown["data"][0]["message"] == "Get Deploymentname Fail"
    await finished(
        api, (await api.delete("/container/delete", params={"name": name})).json()["data"][0]["jobid"]
    )


async def test_image_that_cannot_be_pulled_fails_the_job_with_reason(
    api: httpx.AsyncClient, node_uuid: str, platform: Platform
) -> None:
    name = unique()
    missing = (f"{platform.config.registry}/tytest/nothing-here", "9")
    job = await create(api, body(node_uuid, name, missing))
    assert job["state"] == 4
    assert "nothing-here" in job["message"]
    info = (await api.post("/container/info", params={"name": name})).json()["data"][0]["data"]
    assert info["podinfo"][0]["podstate"] == "Failed"
    await finished(
        api, (await api.delete("/container/delete", params={"name": name})).json()["data"][0]["jobid"]
    )


async def test_agent_offline_converges_when_it_returns(
    api: httpx.AsyncClient,
    node_uuid: str,
    busybox_ref: tuple[str, str],
    docker_client: docker.DockerClient,
    platform: Platform,
) -> None:
    name = unique()
    assert (await create(api, body(node_uuid, name, busybox_ref)))["state"] == 3
    platform.kill("agent", signal.SIGKILL)

    async def status(wanted: str) -> bool:
        node = (await api.get("/node/get", params={"name": node_uuid})).json()["data"][0]
        return bool(node["status"] == wanted)

    try:
        stop = (await api.post("/container/stop", params={"name": name})).json()["data"][0]
        assert stop["code"] == 200, stop  # accepted while the machine still counts as Ready
        status_ = (await api.get("/task/status", params={"jobid": stop["jobid"]})).json()["info"][0]
        assert status_["state"] in (0, 1)
        # The silence is noticed: the machine really goes NotReady while nobody applies the stop.
        await eventually(lambda: status("NotReady"), timeout=30)
        assert inspect(docker_client, name)["State"]["Running"]
        assert (await api.get("/task/status", params={"jobid": stop["jobid"]})).json()["info"][0][
            "state"
        ] == 1
    finally:
        platform.start_service("agent")
    await eventually(lambda: status("Ready"), timeout=30)
    assert (await finished(api, stop["jobid"]))["state"] == 3
    assert not inspect(docker_client, name)["State"]["Running"]
    await finished(
        api, (await api.delete("/container/delete", params={"name": name})).json()["data"][0]["jobid"]
    )
