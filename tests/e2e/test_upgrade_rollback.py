"""Upgrades are transactions: a failed one leaves the machine running what ran before (real Docker)."""

from __future__ import annotations

from typing import Any

import docker
import httpx

from tests.e2e.test_containers_e2e import body, create, finished, inspect
from tests.support import build_busybox, eventually, unique


async def _data(api: httpx.AsyncClient, path: str, name: str) -> dict[str, Any]:
    answer: dict[str, Any] = (await api.post(path, params={"name": name})).json()["data"][0]
    assert answer["code"] == 200, answer
    data: dict[str, Any] = answer["data"]
    return data


async def _upgrade(api: httpx.AsyncClient, name: str, image: str, version: str) -> dict[str, Any]:
    answer = (
        await api.post(
            "/container/inheritUpdate",
            json={"deploymentnames": name, "image": image, "imageversion": version},
        )
    ).json()["data"][0]
    assert answer["code"] == 200, answer
    return await finished(api, answer["jobid"], timeout=60)


async def _lifecycle(api: httpx.AsyncClient, op: str, name: str) -> dict[str, Any]:
    answer = (await api.post(f"/container/{op}", params={"name": name})).json()
    assert answer["code"] == 200, answer
    return await finished(api, answer["data"][0]["jobid"])


async def test_an_upgrade_to_a_missing_tag_fails_at_once_and_leaves_the_old_container_running(
    api: httpx.AsyncClient, node_uuid: str, busybox_ref: tuple[str, str], docker_client: docker.DockerClient
) -> None:
    repository, version = busybox_ref
    name = unique("up")
    assert (await create(api, body(node_uuid, name, busybox_ref)))["state"] == 3
    before = inspect(docker_client, name)

    job = await _upgrade(api, name, repository, "no-such-tag")  # well before the 120 s deadline
    assert job["state"] == 4, job
    assert "no-such-tag" in job["message"], job
    assert "manifest unknown" in job["message"], job
    assert f"rolled back to {repository}:{version}" in job["message"]

    after = inspect(docker_client, name)
    assert after["Id"] == before["Id"]  # never touched
    assert after["State"]["Running"]
    assert after["Config"]["Image"] == f"{repository}:{version}"

    got = await _data(api, "/container/get", name)
    assert (got["imageversion"], got["image"]) == (version, f"{repository}:{version}")

    async def settled() -> dict[str, Any] | None:
        info = await _data(api, "/container/info", name)
        return info if info["podinfo"][0]["podstate"] == "Running" and "failedupdate" in info else None

    info = await eventually(settled, timeout=30)
    failed = info["failedupdate"]
    assert (failed["imageversion"], failed["jobid"]) == ("no-such-tag", job["jobid"])
    assert "manifest unknown" in failed["message"]

    # Every lifecycle operation keeps working on the spec that runs.
    assert (await _lifecycle(api, "restart", name))["state"] == 3
    assert (await _lifecycle(api, "stop", name))["state"] == 3
    assert not inspect(docker_client, name)["State"]["Running"]
    assert (await _lifecycle(api, "start", name))["state"] == 3
    assert inspect(docker_client, name)["Config"]["Image"] == f"{repository}:{version}"

    # A later good upgrade goes through and clears the failed attempt.
    build_busybox(docker_client, repository, "2")
    docker_client.images.push(repository, tag="2")
    assert (await _upgrade(api, name, repository, "2"))["state"] == 3
    assert inspect(docker_client, name)["Config"]["Image"] == f"{repository}:2"
    assert (await _data(api, "/container/get", name))["imageversion"] == "2"
    assert "failedupdate" not in await _data(api, "/container/info", name)

    delete = (await api.delete("/container/delete", params={"name": name})).json()["data"][0]
    assert (await finished(api, delete["jobid"]))["state"] == 3


async def test_an_upgrade_whose_container_dies_is_rolled_back_to_the_version_that_ran(
    api: httpx.AsyncClient, node_uuid: str, busybox_ref: tuple[str, str], docker_client: docker.DockerClient
) -> None:
    repository, version = busybox_ref
    build_busybox(docker_client, repository, "crashes", cmd="exit 3")
    docker_client.images.push(repository, tag="crashes")
    name = unique("up")
    assert (await create(api, body(node_uuid, name, busybox_ref)))["state"] == 3

    job = await _upgrade(api, name, repository, "crashes")
    assert job["state"] == 4, job
    assert "exited with code 3" in job["message"], job

    async def back() -> dict[str, Any] | None:
        try:
            attrs = inspect(docker_client, name)
        except docker.errors.NotFound:
            return None  # between the crashing container's removal and the old one's creation
        running = attrs["State"]["Running"] and attrs["Config"]["Image"] == f"{repository}:{version}"
        return attrs if running else None

    await eventually(back, timeout=60)
    assert (await _data(api, "/container/get", name))["imageversion"] == version

    async def info_running() -> dict[str, Any] | None:
        info = await _data(api, "/container/info", name)
        return info if info["podinfo"][0]["podstate"] == "Running" else None

    info = await eventually(info_running, timeout=30)
    assert info["failedupdate"]["imageversion"] == "crashes"
    assert (await _lifecycle(api, "restart", name))["state"] == 3

    delete = (await api.delete("/container/delete", params={"name": name})).json()["data"][0]
    assert (await finished(api, delete["jobid"]))["state"] == 3
