"""Abuse of image uploads: tars that claim more than they hold, links that dangle or loop.

Each is refused with the contract's upload answer, fast, by the API while the body streams in;
the same tars handed to the imager directly (past the API) fail their job with that answer,
never crash it or leave the job running; a valid upload works right after.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import docker
import httpx
import pytest

from tests.e2e.test_images import BAD_ARCHIVE, pushed, saved_tar, search, upload
from tests.support import eventually, unique
from tests.unit.common.test_image_archive import link_tar, oversized_tar, sparse_tar
from tingyu.cli.launcher import Platform
from tingyu.common import jobs, subjects, timefmt
from tingyu.common.bus import Bus
from tingyu.common.models.images import ImagePushCommand

pytestmark = pytest.mark.e2e


def refused(answer: dict[str, Any], reason: str) -> None:
    assert (answer.get("code"), answer.get("msg"), answer.get("tycode")) == (500, BAD_ARCHIVE, "TY0023"), (
        answer
    )
    assert reason in answer["detail"], answer


async def test_a_sparse_member_claiming_a_pebibyte_is_refused_at_once(
    api: httpx.AsyncClient, tmp_path: Path
) -> None:
    tar = sparse_tar(tmp_path / "sparse.tar")
    assert tar.stat().st_size <= 4096
    for raw in (False, True):  # multipart (length known) and a chunked body (length unknown)
        started = time.monotonic()
        refused(await upload(api, tar, unique("sparse"), "1", raw=raw), "sparse")
        assert time.monotonic() - started < 5


@pytest.mark.parametrize(
    ("links", "reason"),
    [
        ({"0/layer.tar": "../1/layer.tar"}, "dangling"),
        ({"0/layer.tar": "../1/layer.tar", "1/layer.tar": "../0/layer.tar"}, "loop"),
        ({"0/layer.tar": "../../../etc/passwd"}, "outside the archive"),
    ],
)
async def test_links_that_dangle_loop_or_leave_are_refused(
    api: httpx.AsyncClient, tmp_path: Path, links: dict[str, str], reason: str
) -> None:
    first, *rest = links.items()
    tar = link_tar(tmp_path / "links.tar", first[1], dict(rest))
    name = unique("links")
    refused(await upload(api, tar, name, "1"), reason)
    assert await search(api, name) == []


async def imager_job(api: httpx.AsyncClient, bus: Bus, tar: Path, name: str) -> dict[str, Any]:
    """Hand a tar to the imager the way the API does, skipping the API's check; the final job."""
    job_id = jobs.job_id()
    store = await bus.objects(subjects.UPLOADS)
    data = await asyncio.to_thread(tar.read_bytes)
    await store.put(job_id, data)
    command = ImagePushCommand(
        job_id=job_id, name=name, version="1", upload=job_id, size=len(data), issued_at=timefmt.now()
    )
    await jobs.JobStore(bus).submit(command)

    async def final() -> dict[str, Any] | None:
        job = (await api.get("/task/status", params={"jobid": job_id})).json()["info"][0]
        return job if job.get("state") in (3, 4) else None

    job: dict[str, Any] = await eventually(final, timeout=30)
    return job


async def test_the_imager_fails_hostile_tars_and_still_pushes_a_valid_one(
    api: httpx.AsyncClient,
    bus: Bus,
    platform: Platform,
    docker_client: docker.DockerClient,
    tmp_path: Path,
) -> None:
    hostile = {
        "sparse": sparse_tar(tmp_path / "s.tar"),
        "more than the upload holds": oversized_tar(tmp_path / "o.tar"),
        "dangling": link_tar(tmp_path / "d.tar", "../1/layer.tar"),
        "loop": link_tar(tmp_path / "l.tar", "../1/layer.tar", {"1/layer.tar": "../0/layer.tar"}),
    }
    jobs_done = await asyncio.gather(
        *(imager_job(api, bus, tar, unique("hostile")) for tar in hostile.values())
    )
    for reason, job in zip(hostile, jobs_done, strict=True):
        assert (job["state"], job["message"], job["result"]["code"]) == (4, BAD_ARCHIVE, "TY0023"), job
        assert reason in job["result"]["detail"], job
    assert platform.procs["imager"].popen.poll() is None

    name = unique("valid")
    job = await pushed(api, saved_tar(docker_client, tmp_path, unique("src")), name, "1")
    assert job["result"]["format"] in ("docker", "oci")
    assert [v["version"] for v in (await search(api, name))[0]["versions"]] == ["1"]
