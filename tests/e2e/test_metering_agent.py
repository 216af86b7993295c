"""The agent's sampler on a real running container: its CPU and memory reach the API."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import docker
import httpx
import pytest

from tests.conftest import build_busybox, eventually, unique
from tingyu.agent.sampling import SamplerSettings, run_sampler
from tingyu.common import subjects, timefmt
from tingyu.common.bus import Bus
from tingyu.common.models.containers import ContainerSpec, DesiredContainer, NodeDesired

pytestmark = pytest.mark.e2e


async def test_sampled_container_shows_in_resource_use(
    api: httpx.AsyncClient, bus: Bus, docker_client: docker.DockerClient
) -> None:
    node = f"tingyu-{unique('')[1:]}{'0' * 22}"
    name, image, version = unique("meter"), unique("busy"), "1"
    reference = build_busybox(docker_client, f"tytest/{image}", version, cmd="yes > /dev/null")
    # What the deployer writes: the sampler reads the catalog name and version from it.
    spec = ContainerSpec(image=image, imageversion=version, image_ref=reference)
    desired = NodeDesired(
        node_uuid=node,
        containers={name: DesiredContainer(name=name, spec=spec, job_id="j", created_at=time.time())},
    )
    await bus.store(subjects.DESIRED).put(node, desired)
    container = docker_client.containers.run(
        reference, name=name, detach=True, network_mode="host", labels={"tingyu.node": node}
    )
    stop = asyncio.Event()
    sampler = asyncio.create_task(run_sampler(bus, node, stop, SamplerSettings(sample_s=1)))
    started = time.time()
    try:

        async def busy() -> dict[str, Any] | None:
            params = {
                "startDate": timefmt.to_wire(started - 60),
                "endDate": timefmt.to_wire(time.time() + 60),
                "imageVersion": f"{image}:{version}",
            }
            body: dict[str, Any] = (
                await api.get("/info/resourceUse/getByImageVersion", params=params)
            ).json()
            return (
                body if body["code"] == 200 and body["summary"]["peakCpu"] > 0.05 else None
            )  # busy even on a loaded machine

        body = await eventually(busy, timeout=60)
        assert body["summary"]["peakCpu"] < 64  # `yes` keeps about one core busy
        assert body["summary"]["peakMemory"] > 0
        account = (
            await api.get(
                "/info/bandWith/getAllNode",
                params={"startDate": timefmt.to_wire(started - 60), "endDate": timefmt.to_wire(time.time())},
            )
        ).json()
        assert account["code"] == 200
        assert len(account["info"]) >= 1
    finally:
        stop.set()
        await asyncio.wait_for(sampler, 30)
        container.remove(force=True)
        docker_client.images.remove(reference, force=True)
        await bus.store(subjects.DESIRED).delete(node)
