"""The imager as `run_service` runs it, against a real nats-server and docker-registry: a submitted
push job ends succeeded with the image in the registry and the catalog, a second push of the same
version and a push of a vanished upload end failed with their reasons."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from nats.js import errors as js_errors

from tests.support import eventually, registry_http, unique
from tests.unit.common.test_image_archive import layer, oci
from tingyu.cli.launcher import Platform
from tingyu.common import subjects, timefmt
from tingyu.common.bus import Bus
from tingyu.common.jobs import JobStore, job_id
from tingyu.common.models.images import ImagePushCommand
from tingyu.common.models.jobs import Job
from tingyu.common.service import Service
from tingyu.common.settings import PlatformSettings
from tingyu.imager import main
from tingyu.imager.config import ImagerSettings


@pytest.fixture(scope="module")
def registry_url(platform: Platform) -> str:
    """The platform's registry: its tokens come from the platform's API (the imager is this test's)."""
    return f"http://{platform.config.registry}"


@pytest_asyncio.fixture
async def imager(
    nats_url: str, registry_url: str, platform: Platform, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Bus]:
    """A running imager (its `setup` in a `Service`) and a bus of the test's own."""
    user, password = platform.registry_credentials("imager")
    platform = PlatformSettings(
        nats_url=nats_url, registry_url=registry_url, registry_user=user, registry_password=password
    )
    settings = ImagerSettings(spool_dir=tmp_path / "spool", platform=platform)
    monkeypatch.setattr(main, "get_settings", lambda: settings)
    service = Service("imager")

    async def run() -> int:
        async with service.stack:
            await main.setup(service)
            return await service.run()

    running = asyncio.create_task(run())
    bus = await Bus.connect(platform, "imager-tests")
    try:
        yield bus
    finally:
        service.stop.set()
        assert await asyncio.wait_for(running, 20) == 0
        await bus.close()


async def _push(bus: Bus, name: str, upload: str, tar: bytes | None) -> Job:
    """Upload (unless None), submit, and wait until the job is final."""
    if tar is not None:
        await (await bus.objects(subjects.UPLOADS)).put(upload, tar)
    command = ImagePushCommand(
        job_id=job_id(), name=name, version="1", upload=upload, size=len(tar or b""), issued_at=timefmt.now()
    )
    jobs = JobStore(bus)
    await jobs.submit(command)

    async def final() -> Job | None:
        job = await jobs.get(command.job_id)
        return job if job is not None and job.state.final else None

    return await eventually(final, timeout=60)


async def test_push_then_duplicate_then_vanished_upload(
    imager: Bus, platform: Platform, tmp_path: Path
) -> None:
    name = unique("img")
    tar = oci(tmp_path / "image.tar", [layer(unique("content"))]).read_bytes()
    upload = unique("upload")

    done = await _push(imager, name, upload, tar)
    assert done.message == "success", done
    assert done.result["format"] == "oci"
    async with registry_http(platform) as client:
        head = await client.head(
            f"/v2/{name}/manifests/1",
            headers={"Accept": "application/vnd.oci.image.manifest.v1+json"},
        )
    assert head.headers.get("Docker-Content-Digest") == done.result["digest"]
    record = await imager.store(subjects.IMAGES).get(name)
    assert record is not None
    assert record.versions["1"].digest == done.result["digest"]
    uploads = await imager.objects(subjects.UPLOADS)

    async def upload_gone() -> bool:
        try:
            await uploads.get_info(upload)
        except js_errors.ObjectNotFoundError:
            return True
        return False

    await eventually(upload_gone, timeout=10)

    again = await _push(imager, name, unique("upload"), tar)
    assert (again.state.name, again.result["code"]) == ("FAILED", "TY0024")

    vanished = await _push(imager, unique("img"), unique("upload"), None)
    assert vanished.state.name == "FAILED"
    assert vanished.message == "上传文件已失效,请重新上传"
