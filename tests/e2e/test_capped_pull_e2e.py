"""A machine with a pull cap (`TINGYU_AGENT_PULL_RATE`) pre-pulls through its local proxy: the HTTP
API -> the deployer -> a second agent of this machine, capped at 1 MiB/s -> the real Docker Engine and
the platform's registry with its token auth (docs/remote.md#bandwidth-cap)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import docker
import httpx
import pytest_asyncio

from tests.e2e.test_containers_e2e import finished
from tests.integration.agent.test_agent_lifecycle import run_agent
from tests.support import FAST_ENV, build_busybox, docker_as, eventually, unique
from tingyu.agent.config import AgentSettings
from tingyu.agent.identity import load_or_create
from tingyu.cli.launcher import Platform
from tingyu.common.auth.enrollment import new_token
from tingyu.common.bus import Bus
from tingyu.common.settings import PlatformSettings

RATE = 1024 * 1024
RANDOM_BYTES = 4 * 1024 * 1024  # with busybox, at least 4 s of pulling at RATE


@pytest_asyncio.fixture
async def capped_uuid(
    api: httpx.AsyncClient, bus: Bus, platform: Platform, tmp_path: Path
) -> AsyncIterator[str]:
    """A second agent on this machine, enrolled as any machine is, whose pulls share 1 MiB/s; its
    uuid once it has joined."""
    area, operator = FAST_ENV["TINGYU_AGENT_AREA"], FAST_ENV["TINGYU_AGENT_OPERATOR"]
    machine = PlatformSettings(
        nats_url=platform.config.nats_url,
        nats_creds="",  # the agent's own credential (state folder), not the suite's admin
        registry=platform.config.registry,
        registry_url=f"http://{platform.config.registry}",
        state_dir=tmp_path,
    )
    settings = AgentSettings(
        platform=machine,
        state_dir=tmp_path / "agent",
        enroll_url=platform.config.api_url,
        enroll_token=await new_token(bus, area, operator),
        heartbeat_s=1.0,
        resync_s=3.0,
        pull_rate="1M",  # parsed as the environment's text is
    )
    uuid = load_or_create(settings.state_dir).uuid
    stop = asyncio.Event()
    task = asyncio.create_task(run_agent(stop, settings))

    async def ready() -> bool:
        body = (await api.get("/node/get", params={"name": uuid})).json()
        return bool(body["code"] == 200 and body["data"][0]["status"] == "Ready")

    try:
        await eventually(ready, timeout=60)
        yield uuid
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


def tags_of(client: docker.DockerClient, image_ref: str) -> list[str]:
    return list(client.api.inspect_image(image_ref)["RepoTags"])


async def prepull_timed(
    api: httpx.AsyncClient, platform: Platform, docker_client: docker.DockerClient, uuid: str, **extra: Any
) -> None:
    """Pre-pull an image of 4 MiB of random bytes that is not on this machine onto `uuid`; it must
    take at least ~3 s (a 1 MiB/s cap, the bucket's burst aside) and end under its own name only."""
    repository = f"{platform.config.registry}/tytest/{unique('capped')}"
    image_ref = build_busybox(docker_client, repository, "1", random_bytes=RANDOM_BYTES)
    await asyncio.to_thread(docker_as, platform, "imager", "push", image_ref)
    docker_client.images.remove(image_ref, force=True)
    try:
        request: dict[str, Any] = {"uuids": [uuid], "image": repository, "imageversion": "1", **extra}
        started = time.monotonic()
        answer = (await api.post("/image/prepull", json=request)).json()
        assert (answer["code"], answer["data"]) == (200, None), answer
        job = await finished(api, answer["jobid"], timeout=120)
        took = time.monotonic() - started
        assert job["state"] == 3, job["result"]["failures"]
        assert (job["result"]["pulled"], job["result"]["failed"]) == (1, 0), job
        assert took >= 3.0, f"a capped pull of {RANDOM_BYTES} random bytes took only {took:.1f}s"
        assert tags_of(docker_client, image_ref) == [image_ref]  # the proxy's name is gone
    finally:
        with contextlib.suppress(docker.errors.NotFound):  # by id: every name it has goes
            docker_client.images.remove(docker_client.images.get(image_ref).id, force=True)


async def test_a_capped_prepull_takes_its_time_and_leaves_only_the_original_name(
    api: httpx.AsyncClient, platform: Platform, docker_client: docker.DockerClient, capped_uuid: str
) -> None:
    await prepull_timed(api, platform, docker_client, capped_uuid)


async def test_a_job_cap_above_the_machines_does_not_lift_it(
    api: httpx.AsyncClient, platform: Platform, docker_client: docker.DockerClient, capped_uuid: str
) -> None:
    await prepull_timed(api, platform, docker_client, capped_uuid, ratelimit=64 * RATE)


async def test_a_job_cap_holds_a_machine_without_one(
    api: httpx.AsyncClient, platform: Platform, docker_client: docker.DockerClient, node_uuid: str
) -> None:
    """The platform's own agent has no TINGYU_AGENT_PULL_RATE: the job's `ratelimit` alone caps it."""
    await prepull_timed(api, platform, docker_client, node_uuid, ratelimit=RATE)


async def test_a_ratelimit_out_of_bounds_is_refused(
    api: httpx.AsyncClient, node_uuid: str, busybox_ref: tuple[str, str]
) -> None:
    image, version = busybox_ref
    for value in ["5M", True, -1, 1.5, 1024, 100 * 1024**3 + 1, [RATE]]:
        request = {"uuids": [node_uuid], "image": image, "imageversion": version, "ratelimit": value}
        answer = (await api.post("/image/prepull", json=request)).json()
        assert answer["code"] == "TY0003", (value, answer)
        assert "ratelimit must be bytes per second" in answer["detail"], (value, answer)
        assert "jobid" not in answer


async def test_a_capped_prepull_of_a_missing_image_fails_with_the_original_name(
    api: httpx.AsyncClient, platform: Platform, capped_uuid: str
) -> None:
    missing = f"{platform.config.registry}/tytest/{unique('absent')}"
    request: dict[str, Any] = {"uuids": [capped_uuid], "image": missing, "imageversion": "1"}
    answer = (await api.post("/image/prepull", json=request)).json()
    job = await finished(api, answer["jobid"], timeout=120)
    assert job["state"] == 4, job
    reason = job["result"]["failures"][capped_uuid]
    assert f"cannot pull {missing}:1" in reason
    assert "127.0.0.1:" not in reason.replace(platform.config.registry, ""), reason
