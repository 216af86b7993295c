"""kill -9 of the imager and of metering in the middle of their work: nothing accepted is lost.

Every upload job the API accepted ends stored (pushed and in the catalog) or failed with a reason;
every sample published while metering died is counted once after it is back. (The deployer, the
nodes service and nats-server are killed in tests/integration/test_faults.py.)
"""

from __future__ import annotations

import asyncio
import math
import signal
from pathlib import Path
from typing import Any

import docker
import httpx
import pytest

from tests.abuse.conftest import assert_alive
from tests.e2e.test_images import saved_tar, search, upload
from tests.integration.metering.test_metering import _bandwidth, _fleet, _publish, expected
from tests.support import eventually, unique
from tingyu.cli.launcher import Platform
from tingyu.common.bus import Bus

pytestmark = pytest.mark.faults


async def job_of(api: httpx.AsyncClient, job_id: str) -> dict[str, Any]:
    info: dict[str, Any] = (await api.get("/task/status", params={"jobid": job_id})).json()["info"][0]
    return info


async def test_imager_killed_during_pushes_every_accepted_upload_ends_stored_or_failed(
    *,
    api: httpx.AsyncClient,
    platform: Platform,
    node_uuid: str,
    docker_client: docker.DockerClient,
    tmp_path: Path,
) -> None:
    tar = saved_tar(docker_client, tmp_path, unique("k9"))
    name = f"tytest/{unique('k9')}"
    accepted = []
    for version in ("1", "2", "3"):
        answer = await upload(api, tar, name, version)
        assert answer["code"] == 200, answer
        accepted.append((version, answer["data"]["jobid"]))

    async def pushing() -> bool:
        states = [(await job_of(api, job))["state"] for _, job in accepted]
        return 2 in states or all(s in (3, 4) for s in states)

    await eventually(pushing, timeout=60, every=0.05)
    platform.restart_hard("imager")  # SIGKILL in the middle of a push, then a fresh process

    async def all_final() -> list[dict[str, Any]] | None:
        jobs = [await job_of(api, job) for _, job in accepted]
        return jobs if all(j["state"] in (3, 4) for j in jobs) else None

    jobs = await eventually(all_final, timeout=240, every=1.0)  # a taken message returns after ack_wait
    catalog = {v["version"] for image in await search(api, name) for v in image["versions"]}
    for (version, _), job in zip(accepted, jobs, strict=True):
        if job["state"] == 3:
            assert version in catalog, (version, job, catalog)
        else:
            assert job["message"], job  # failed with a reason
            assert version not in catalog
    assert any(job["state"] == 3 for job in jobs), jobs  # the restarted imager does its work
    await assert_alive(api, node_uuid)


async def test_metering_killed_during_ingest_counts_every_sample_once(
    platform: Platform, api: httpx.AsyncClient, bus: Bus, node_uuid: str
) -> None:
    fleet = _fleet(machines=2, ticks=120)
    batches = fleet.batches()
    image = fleet.images[0][0]
    start, end = fleet.start, fleet.start + fleet.ticks * fleet.step_s
    want = expected([s for b in batches for s in b.samples], start, end, account=False, image=image)

    async def total() -> float:
        body = await _bandwidth(api, "getByImage", start, end, image=image)
        return sum(p["upbps"] for p in body.get("info") or []) if body["code"] == 200 else -1.0

    published: list[int] = [0]
    publishing = asyncio.create_task(_publish_slowly(bus, batches, published))
    try:

        async def some_stored() -> bool:
            return await total() > 0

        await eventually(some_stored, timeout=60, every=0.1)
        platform.kill("metering", signal.SIGKILL)  # in the middle of the stream of batches
        at_kill = published[0]

        async def more_published() -> bool:
            return published[0] > at_kill or publishing.done()

        await eventually(more_published, timeout=30, every=0.05)  # some arrive while it is dead
        platform.start_service("metering")
    finally:
        await publishing
    assert published[0] == len(batches)

    async def all_counted() -> bool:
        return math.isclose(await total(), sum(want["up"]), rel_tol=1e-6)

    await eventually(all_counted, timeout=120, every=0.5)
    await assert_alive(api, node_uuid)


async def _publish_slowly(bus: Bus, batches: list[Any], published: list[int]) -> None:
    """The batches in small groups, so that a kill lands while some are stored and some are not."""
    for first in range(0, len(batches), 4):
        group = batches[first : first + 4]
        await _publish(bus, group)
        published[0] += len(group)
        await asyncio.sleep(0.05)  # paced like agents, not a condition to wait for
