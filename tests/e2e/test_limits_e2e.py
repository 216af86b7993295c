"""Documented limits, on both sides of each: the upload size (TY0052) and the items per request."""

from __future__ import annotations

import signal
from collections.abc import AsyncIterator
from pathlib import Path

import docker
import httpx
import pytest_asyncio

from tests.e2e.test_images import manifest_status, pushed, saved_tar, search, upload
from tests.support import bearer, unique
from tingyu.cli.launcher import Platform, free_port, http_ok, wait_until

MAX_ITEMS = 1000  # the API's default `max_items`


@pytest_asyncio.fixture
async def tar_and_small_api(
    platform: Platform, docker_client: docker.DockerClient, tmp_path: Path
) -> AsyncIterator[tuple[Path, httpx.AsyncClient]]:
    """A `docker save` tar, and a second API process whose upload limit is exactly that tar's size."""
    tar = saved_tar(docker_client, tmp_path, unique("src"))
    port = free_port()
    env = {"TINGYU_API_PORT": str(port), "TINGYU_API_MAX_UPLOAD_BYTES": str(tar.stat().st_size)}
    platform.start_service("api", env, label="api-small")
    try:
        wait_until(lambda: http_ok(f"http://127.0.0.1:{port}/tingyu/healthz"), 60, "second api")
        root = f"http://127.0.0.1:{port}/tingyu"
        async with httpx.AsyncClient(base_url=root, timeout=60, headers=bearer()) as client:
            yield tar, client
    finally:
        platform.kill("api-small", signal.SIGTERM)


async def test_upload_at_the_size_limit_is_stored_and_one_byte_more_is_refused(
    tar_and_small_api: tuple[Path, httpx.AsyncClient], platform: Platform
) -> None:
    tar, small = tar_and_small_api
    over = tar.with_name("over.tar")
    over.write_bytes(tar.read_bytes() + b"\0")  # still a valid tar, one byte past the limit
    name = unique("limit")
    refused = await upload(small, over, name, "1", raw=True)
    assert (refused["code"], refused["msg"]) == ("TY0052", "文件过大"), refused
    assert f"over {tar.stat().st_size} bytes" in refused["detail"], refused
    assert "jobid" not in str(refused)
    assert await search(small, name) == []
    assert await manifest_status(platform, name, "1") == 404

    await pushed(small, tar, name, "1", raw=True)
    assert await manifest_status(platform, name, "1") == 200
    assert (await small.delete("/image/deleteByImage", params={"image": name})).json()["code"] == 200


async def test_at_most_1000_items_per_request(api: httpx.AsyncClient) -> None:
    names = ",".join(unique() for _ in range(MAX_ITEMS))
    at_limit = (await api.post("/container/stop", params={"name": names})).json()
    # Each one judged: none exists, so nothing succeeded and the answer is no success (TY0017).
    assert (at_limit["code"], at_limit["tycode"]) == (500, "TY0017"), at_limit["msg"]
    assert len(at_limit["data"]) == MAX_ITEMS
    assert {item["code"] for item in at_limit["data"]} == {500}
    over = (await api.post("/container/stop", params={"name": f"{names},{unique()}"})).json()
    assert over == {
        "msg": "参数值不合法",
        "code": "TY0003",
        "detail": f"at most {MAX_ITEMS} names per request",
    }, over

    items = [{"uuid": "tingyu-" + "e" * 32, "deploymentname": unique(), "image": "x"}] * (MAX_ITEMS + 1)
    create = (await api.post("/container/create", json=items)).json()
    assert create["code"] == "TY0003", create
    assert f"at most {MAX_ITEMS} containers per request" in create["detail"]
    jobs = (await api.get("/task/status", params={"jobid": ",".join(["nope"] * (MAX_ITEMS + 1))})).json()
    assert jobs["code"] == "TY0003", jobs
