"""The imager's delete responder over real NATS: refusals come back raised as their TY error class,
a delete that needs no registry call answers what it removed and changes the catalog."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from tests.support import unique
from tests.support.factories import spec
from tingyu.common import imagecatalog
from tingyu.common.bus import Bus, call, serve
from tingyu.common.desired import DesiredStore
from tingyu.common.errors import ImageInUse, ImageNotFound, ImageVersionNotFound, InvalidParameter
from tingyu.common.models.containers import DesiredContainer
from tingyu.common.models.images import ImageRecord, ImagerReply, ImagerRequest, ImageVersion
from tingyu.common.settings import PlatformSettings
from tingyu.imager import catalog
from tingyu.imager.deletes import Deleter
from tingyu.imager.registry import RegistryClient


@pytest_asyncio.fixture
async def deletes(nats_url: str) -> AsyncIterator[tuple[Bus, str]]:
    """A bus and the subject a `Deleter` answers on (its own, so tests never meet a real imager).
    Its registry client points nowhere: these deletes must not need the registry."""
    settings = PlatformSettings(nats_url=nats_url, registry_url="http://127.0.0.1:9")
    bus = await Bus.connect(settings, "imager-tests")
    registry = RegistryClient(settings, timeout=2.0)
    subject = f"test.imager.{unique()}"
    sub = await serve(bus, subject, ImagerRequest, Deleter(bus, registry).answer)
    try:
        yield bus, subject
    finally:
        await sub.close()
        await registry.close()
        await bus.close()


async def seed(bus: Bus, record: ImageRecord) -> None:
    """Put an image and its versions in the catalog, as pushes record them."""
    for entry in record.versions.values():
        await catalog.add_version(bus, record.name, entry)


async def _delete(bus: Bus, subject: str, name: str, version: str = "", op: str = "delete") -> ImagerReply:
    return await call(bus, subject, ImagerRequest(op=op, name=name, version=version), ImagerReply)


async def test_refusals_come_back_as_their_error_class(deletes: tuple[Bus, str]) -> None:
    bus, subject = deletes
    name = unique("img")
    with pytest.raises(ImageNotFound) as missing:
        await _delete(bus, subject, name)
    assert (missing.value.msg, missing.value.detail) == ("镜像不存在!", f"no image {name} in the catalog")

    digest = "sha256:" + "a" * 64
    version = ImageVersion(version="1", digest=digest, uploaded_at=1.0)
    record = ImageRecord(name=name, versions={"1": version}, created_at=1.0)
    await seed(bus, record)
    with pytest.raises(ImageVersionNotFound) as no_version:
        await _delete(bus, subject, name, "9")
    assert (no_version.value.msg, no_version.value.detail) == (
        "镜像版本不存在!",
        f"image {name} has no version 9 in the catalog",
    )
    with pytest.raises(InvalidParameter):
        await _delete(bus, subject, name, op="search")

    node, deployment = unique("node"), unique("web")
    desired = DesiredContainer(
        name=deployment, spec=spec(image=name, version="1"), job_id="j", created_at=0.0
    )
    await DesiredStore(bus).put(node, desired)
    try:
        with pytest.raises(ImageInUse) as in_use:
            await _delete(bus, subject, name, "1")
        assert in_use.value.detail == f"{name}:1 is used by: {deployment}"
    finally:
        await DesiredStore(bus).remove(node, deployment)
    assert await imagecatalog.read_image(bus, name) is not None  # refusals changed nothing


async def test_a_tag_sharing_its_manifest_goes_from_the_catalog_only(deletes: tuple[Bus, str]) -> None:
    bus, subject = deletes
    name, digest = unique("img"), "sha256:" + "b" * 64
    versions = {tag: ImageVersion(version=tag, digest=digest, uploaded_at=1.0) for tag in ("1", "2")}
    await seed(bus, ImageRecord(name=name, versions=versions, created_at=1.0))

    # Deleting the manifest would take tag 1 too: the registry is not asked at all.
    reply = await _delete(bus, subject, name, "2")
    assert reply == ImagerReply(image=name, versions=["2"], manifests=[])
    record = await imagecatalog.read_image(bus, name)
    assert record is not None
    assert sorted(record.versions) == ["1"]


async def test_a_version_an_upgrade_in_flight_may_return_to_is_in_use(deletes: tuple[Bus, str]) -> None:
    """While a deployment is upgraded from 1 to 2, version 1 is its `fallback`: the machine still runs
    it and goes back to it if the upgrade fails, so deleting it is refused until the upgrade ends."""
    bus, subject = deletes
    name, digest = unique("img"), "sha256:" + "c" * 64
    versions = {tag: ImageVersion(version=tag, digest=digest, uploaded_at=1.0) for tag in ("1", "2")}
    await seed(bus, ImageRecord(name=name, versions=versions, created_at=1.0))
    node, deployment = unique("node"), unique("web")
    upgrading = DesiredContainer(
        name=deployment,
        spec=spec(image=name, version="2"),
        fallback=spec(image=name, version="1"),
        revision=2,
        job_id="j",
        created_at=0.0,
    )
    store = DesiredStore(bus)
    await store.put(node, upgrading)
    try:
        with pytest.raises(ImageInUse) as in_use:
            await _delete(bus, subject, name, "1")
        assert in_use.value.detail == f"{name}:1 is used by: {deployment}"
        record = await imagecatalog.read_image(bus, name)
        assert record is not None
        assert sorted(record.versions) == ["1", "2"]

        # The upgrade succeeded: the fallback is gone, and so is the last use of version 1.
        done = upgrading.model_copy(update={"fallback": None})
        await store.put(node, done)
        reply = await _delete(bus, subject, name, "1")
        assert reply == ImagerReply(image=name, versions=["1"], manifests=[])
    finally:
        await store.remove(node, deployment)
