"""create -> Running latency through the platform vs a direct docker-py create + start.

    .venv/bin/python -m bench.core.latency [--containers 30]

Both sides run the same busybox image (made here with `docker import`, present locally so
nothing is pulled) with the same host config, one container at a time. Ours is measured from
the HTTP POST to the moment the job turns succeeded in `ty_jobs` (a KV watch, no polling);
the baseline from `containers.create` to `start` returning. Containers are removed after.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import time

import docker
import httpx
from tests.support import build_busybox, docker_as

from bench.harness import bearer, percentile, platform, report
from tingyu.cli.launcher import Platform
from tingyu.common import subjects
from tingyu.common.bus import Bus
from tingyu.common.models.jobs import Job, JobState


async def job_done(bus: Bus, jobid: str) -> Job:
    async for _, job in bus.store(subjects.JOBS).watch(jobid):
        if job is not None and job.state.final:
            return job
    raise RuntimeError("watch ended")


async def ours(
    url: str, bus: Bus, uuid: str, image: str, count: int, *, headers: dict[str, str]
) -> tuple[list[float], list[str]]:
    latencies, names = [], []
    async with httpx.AsyncClient(base_url=url, timeout=60, headers=headers) as client:
        for _ in range(count):
            name = f"lat{secrets.token_hex(5)}"
            item = {
                "uuid": uuid,
                "image": image,
                "imageversion": "1",
                "deploymentname": name,
                "limitsmemory": 64,
            }
            start = time.perf_counter()
            answer = (await client.post("/container/create", json=[item])).json()["data"][0]
            job = await job_done(bus, answer["jobid"])
            latencies.append(time.perf_counter() - start)
            assert job.state == JobState.SUCCEEDED, job
            names.append(name)
        for name in names:
            await client.delete("/container/delete", params={"name": name})
    return latencies, names


def direct(client: docker.DockerClient, image: str, count: int) -> list[float]:
    latencies = []
    for _ in range(count):
        start = time.perf_counter()
        container = client.containers.create(
            f"{image}:1",
            name=f"direct{secrets.token_hex(5)}",
            network_mode="host",
            restart_policy={"Name": "always"},
            mem_limit=64 * 1024 * 1024,
        )
        container.start()
        latencies.append(time.perf_counter() - start)
        container.remove(force=True)
    return latencies


def push_busybox(client: docker.DockerClient, running: Platform, image: str) -> None:
    """Build the image and push it as the registry's pushing user (the registry wants a login)."""
    build_busybox(client, image, "1")
    docker_as(running, "imager", "push", f"{image}:1")


async def node_uuid(url: str, headers: dict[str, str]) -> str:
    async with httpx.AsyncClient(base_url=url, headers=headers) as client:
        for _ in range(300):
            nodes = (await client.get("/node/list")).json()["data"]
            if nodes:
                return str(nodes[0]["uuid"])
            await asyncio.sleep(0.2)
    raise RuntimeError("the agent did not join")


async def run(count: int) -> list[str]:
    client = docker.from_env(timeout=120)
    with platform(("nodes", "deployer", "api", "agent"), TINGYU_AGENT_STOP_TIMEOUT_S="1") as running:
        image = f"{running.config.registry}/bench/busybox"
        await asyncio.to_thread(push_busybox, client, running, image)
        bus = await Bus.connect(running.config.admin_settings(), "bench")
        headers = bearer(running.config)
        uuid = await node_uuid(running.config.api_url, headers)
        mine, _ = await ours(running.config.api_url, bus, uuid, image, count, headers=headers)
        baseline = direct(client, image, count)
        await bus.close()
    lines = [
        report(
            "create->Running p50",
            percentile(mine, 50) * 1000,
            percentile(baseline, 50) * 1000,
            "ms",
            "docker-py create+start",
        ),
        report(
            "create->Running p99",
            percentile(mine, 99) * 1000,
            percentile(baseline, 99) * 1000,
            "ms",
            "docker-py create+start",
        ),
    ]
    client.close()
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--containers", type=int, default=30)
    args = parser.parse_args()
    asyncio.run(run(args.containers))


if __name__ == "__main__":
    main()
