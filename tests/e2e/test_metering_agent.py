"""The real agent's samples of a real container reach chDB and the API: CPU and memory of a busy
container under a CPU limit, by its image version."""

from __future__ import annotations

import time
from typing import Any

import docker
import httpx

from tests.e2e.test_containers_e2e import body, create, finished
from tests.support import build_busybox, eventually, unique
from tingyu.cli.launcher import Platform
from tingyu.common import timefmt

CPU_LIMIT = 0.5  # what body() asks for


async def resource_use(api: httpx.AsyncClient, image_version: str, since: float) -> dict[str, Any]:
    params = {
        "startDate": timefmt.to_wire(since - 60),
        "endDate": timefmt.to_wire(time.time() + 60),
        "imageVersion": image_version,
    }
    answer: dict[str, Any] = (await api.get("/info/resourceUse/getByImageVersion", params=params)).json()
    assert answer["code"] == 200, answer
    return answer


async def test_agent_samples_of_a_busy_container_show_in_resource_use(
    api: httpx.AsyncClient, node_uuid: str, platform: Platform, docker_client: docker.DockerClient
) -> None:
    repository = f"{platform.config.registry}/tytest/{unique('busy')}"
    build_busybox(docker_client, repository, "1", cmd="yes > /dev/null")
    docker_client.images.push(repository, tag="1")
    started = time.time()
    # No rows: the answer is all zeros, so any non-zero figure below comes from stored samples.
    empty = await resource_use(api, f"{repository}:1", started)
    assert (empty["summary"]["peakCpu"], empty["summary"]["peakMemory"]) == (0, 0), empty

    name = unique("meter")
    assert (await create(api, body(node_uuid, name, (repository, "1"))))["state"] == 3
    try:

        async def busy() -> dict[str, Any] | None:
            answer = await resource_use(api, f"{repository}:1", started)
            return answer if answer["summary"]["peakCpu"] > 0.05 else None  # busy even on a loaded machine

        answer = await eventually(busy, timeout=90)
        assert answer["summary"]["peakCpu"] <= CPU_LIMIT * 1.2, answer  # Docker holds `yes` to its limit
        assert answer["summary"]["peakMemory"] > 0
        assert any(point["cpu"] > 0 for point in answer["info"])
        other = await resource_use(api, f"{repository}:2", started)  # another version: none of it
        assert other["summary"]["peakCpu"] == 0
    finally:
        delete = (await api.delete("/container/delete", params={"name": name})).json()["data"][0]
        await finished(api, delete["jobid"])
