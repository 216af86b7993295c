"""One machine with many large containers, end to end: every deployment has its own desired-state
key, so 40 containers with 64 KiB of env each (2.5 MiB in all, over NATS' 1 MiB max payload) all run."""

from __future__ import annotations

import asyncio

import docker
import httpx

from tests.e2e.test_containers_e2e import body, finished
from tests.support import unique
from tingyu.common.bus import Bus
from tingyu.common.desired import DesiredStore

CONTAINERS = 40
ENV_BYTES = 64 * 1024  # the API's per-container limit (TINGYU_API_MAX_ENV_BYTES), names included


def big_env(index: int) -> list[dict[str, str]]:
    key = f"BLOB{index}"
    return [{"key": key, "value": chr(ord("a") + index % 26) * (ENV_BYTES - len(key))}]


async def test_forty_containers_with_64_kib_of_env_each_all_run(
    api: httpx.AsyncClient,
    bus: Bus,
    node_uuid: str,
    busybox_ref: tuple[str, str],
    docker_client: docker.DockerClient,
) -> None:
    prefix = unique("many")
    names = [f"{prefix}-{index}" for index in range(CONTAINERS)]
    items = [body(node_uuid, name, busybox_ref, env=big_env(i)) for i, name in enumerate(names)]
    answer = (await api.post("/container/create", json=items)).json()["data"]
    assert [a["code"] for a in answer] == [200] * CONTAINERS, answer
    try:
        jobs = await asyncio.gather(*(finished(api, a["jobid"], timeout=300) for a in answer))
        assert [job["state"] for job in jobs] == [3] * CONTAINERS, jobs

        desired = await DesiredStore(bus).node(node_uuid)
        assert set(names) <= set(desired.containers)
        assert sum(len(desired.containers[n].to_bytes()) for n in names) > CONTAINERS * ENV_BYTES
        for index, name in enumerate(names):
            attrs = docker_client.api.inspect_container(name)
            assert attrs["State"]["Running"], name
            key = f"BLOB{index}"
            assert f"{key}={big_env(index)[0]['value']}" in attrs["Config"]["Env"]
        listed = (await api.post("/container/info", params={"name": names[-1]})).json()["data"][0]["data"]
        assert listed["podinfo"][0]["podstate"] == "Running"
    finally:
        deletes = [
            (await api.delete("/container/delete", params={"name": name})).json()["data"][0]["jobid"]
            for name in names
        ]
        await asyncio.gather(*(finished(api, jobid, timeout=300) for jobid in deletes))
