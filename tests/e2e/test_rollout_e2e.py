"""A canary rollout over this machine's real containers: the HTTP API moves exactly the share
asked for to the new image version, and Docker runs it."""

from __future__ import annotations

from typing import Any

import docker
import httpx

from tests.e2e.test_containers_e2e import body, create, finished
from tests.support import FAST_ENV, build_busybox, eventually, unique
from tingyu.cli.launcher import Platform


async def test_half_of_an_area_moves_and_a_higher_percent_extends(
    api: httpx.AsyncClient, node_uuid: str, platform: Platform, docker_client: docker.DockerClient
) -> None:
    repository = f"{platform.config.registry}/tytest/{unique('canary')}"
    for version in ("1", "2"):
        build_busybox(docker_client, repository, version)
        docker_client.images.push(repository, tag=version)
    names = [unique("can") for _ in range(4)]
    for name in names:
        assert (await create(api, body(node_uuid, name, (repository, "1"))))["state"] == 3
    area, operator = FAST_ENV["TINGYU_AGENT_AREA"], FAST_ENV["TINGYU_AGENT_OPERATOR"]

    def images() -> dict[str, str]:
        return {n: docker_client.api.inspect_container(n)["Config"]["Image"] for n in names}

    async def roll(percent: int) -> dict[str, Any]:
        request = {
            "area": area,
            "operator": operator,
            "percent": percent,
            "image": repository,
            "imageversion": "2",
        }
        answer = (await api.put("/container/updateByInherit", json=request)).json()
        assert (answer["code"], answer["data"]) == (200, None), answer
        return await finished(api, answer["jobid"], timeout=120)

    try:
        half = await roll(50)
        assert half["state"] == 3, half
        assert (half["result"]["total"], half["result"]["target"], half["result"]["updated"]) == (4, 2, 2)
        first = images()
        moved = {n for n, image in first.items() if image == f"{repository}:2"}
        assert len(moved) == 2, first
        kept = {n: docker_client.api.inspect_container(n)["Id"] for n in moved}

        whole = await roll(100)
        assert whole["state"] == 3, whole
        assert set(images().values()) == {f"{repository}:2"}
        for name, container_id in kept.items():  # the first half was left alone, not recreated
            assert docker_client.api.inspect_container(name)["Id"] == container_id

        wrong = (
            await api.put(
                "/container/updateByInherit",
                json={
                    "area": area,
                    "operator": "铁通",
                    "percent": 10,
                    "image": repository,
                    "imageversion": "2",
                },
            )
        ).json()
        assert wrong == {"msg": "运营商错误!正确为移动、联通和电信!", "code": "TY0032"}
    finally:
        for name in names:
            answer = (await api.delete("/container/delete", params={"name": name})).json()["data"][0]
            if "jobid" in answer:
                await finished(api, answer["jobid"])

    async def gone() -> bool:
        # Only this test's containers: this machine's agent label and the exact names (a shared Engine).
        return not any(
            docker_client.containers.list(
                all=True, filters={"label": f"tingyu.node={node_uuid}", "name": f"^{name}$"}
            )
            for name in names
        )

    await eventually(gone, timeout=30)
