"""The imager as `run_service` runs it, against a real nats-server and docker-registry: a submitted
push job ends succeeded with the image in the registry and the catalog, a second push of the same
version and a push of a vanished upload end failed with their reasons."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from nats.js import errors as js_errors

from tests.support import eventually, registry_http, serving, unique
from tests.unit.common.test_image_archive import layer, oci
from tingyu.cli.launcher import Platform
from tingyu.common import imagecatalog, subjects, timefmt
from tingyu.common.bus import Bus
from tingyu.common.jobs import JobStore, job_id
from tingyu.common.models.images import ImagePushCommand, ImageRecord, ImageVersion
from tingyu.common.models.jobs import Job
from tingyu.common.settings import PlatformSettings
from tingyu.imager import catalog, main
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
    async with serving("imager", main.setup):
        bus = await Bus.connect(platform, "imager-tests")
        try:
            yield bus
        finally:
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
    record = await imagecatalog.read_image(imager, name)
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


async def test_an_image_whose_versions_add_up_past_a_record_still_takes_uploads(
    imager: Bus, tmp_path: Path
) -> None:
    """Each version is its own record: 300 versions of ~4 KiB (over 1 MiB in all) leave room for more."""
    name = unique("img")
    for index in range(300):
        entry = ImageVersion(
            version=f"s{index}", digest=f"sha256:{index:064x}", uploaded_at=1.0, detail="d" * 4000
        )
        await catalog.add_version(imager, name, entry)
    before = await imagecatalog.read_image(imager, name)
    assert before is not None
    assert len(before.to_bytes()) > 1 << 20  # the old one-record layout could not have held it

    tar = oci(tmp_path / "image.tar", [layer(unique("content"))]).read_bytes()
    done = await _push(imager, name, unique("upload"), tar)
    assert done.message == "success", done
    after = await imagecatalog.read_image(imager, name)
    assert after is not None
    assert len(after.versions) == 301
    assert after.versions["1"].digest == done.result["digest"]
    assert after.created_at == 1.0  # the index keeps when the image first came


async def test_a_legacy_catalog_record_is_split_into_versions(imager: Bus) -> None:
    name = f"{unique('legacy')}/web.app"  # dots in the name and the tags
    versions = {
        tag: ImageVersion(version=tag, digest="sha256:" + "e" * 64, uploaded_at=2.0) for tag in ("v6.1", "2")
    }
    legacy = ImageRecord(name=name, versions=versions, created_at=2.0)
    raw = imager.store(subjects.IMAGES)
    await raw.put(name, legacy)  # the old layout: every version in the image's record, key = name

    assert await imagecatalog.migrate(imager) >= 1
    assert await imagecatalog.read_image(imager, name) == legacy  # reads exactly as before
    assert await raw.get(name) is None  # the legacy record is gone
    index = await raw.get(imagecatalog.image_key(name))
    assert index is not None
    assert index.versions == {}
    assert await catalog.version(imager, name, "v6.1") == versions["v6.1"]
    assert await imagecatalog.migrate(imager) == 0  # nothing left to split
