"""The image catalog (bucket `ty_images`, laid out by `tingyu.common.imagecatalog`) and who uses
an image (bucket `ty_desired`)."""

from __future__ import annotations

from tingyu.common import imagecatalog, subjects
from tingyu.common.bus import Bus
from tingyu.common.desired import DesiredStore
from tingyu.common.errors import ImageNotFound, ImageVersionExists, ImageVersionNotFound
from tingyu.common.models.containers import ContainerSpec, DesiredState
from tingyu.common.models.images import ImageRecord, ImageVersion


async def image(bus: Bus, name: str) -> ImageRecord:
    """The catalog record with its versions; TY0020 when absent."""
    record = await imagecatalog.read_image(bus, name)
    if record is None:
        raise ImageNotFound(detail=f"no image {name} in the catalog")
    return record


async def version(bus: Bus, name: str, tag: str) -> ImageVersion:
    """One version of a catalog image (one key read); TY0020 / TY0021 when absent."""
    found = await bus.store(subjects.IMAGE_VERSIONS).get(imagecatalog.version_key(name, tag))
    if found is None:
        if await imagecatalog.index(bus, name) is None:
            raise ImageNotFound(detail=f"no image {name} in the catalog")
        raise ImageVersionNotFound(detail=f"image {name} has no version {tag} in the catalog")
    return found


async def has_version(bus: Bus, name: str, tag: str) -> bool:
    return await bus.store(subjects.IMAGE_VERSIONS).get(imagecatalog.version_key(name, tag)) is not None


async def add_version(bus: Bus, name: str, entry: ImageVersion) -> None:
    """Record a pushed version (its own key), then the image's index if it is new; TY0024 if
    another push recorded that version first."""

    def change(existing: ImageVersion | None) -> ImageVersion | None:
        if existing is not None and existing.digest != entry.digest:
            raise ImageVersionExists(detail=f"version {name}:{entry.version} is already in the catalog")
        return entry

    await bus.store(subjects.IMAGE_VERSIONS).mutate(imagecatalog.version_key(name, entry.version), change)

    def first(record: ImageRecord | None) -> ImageRecord | None:
        return ImageRecord(name=name, created_at=entry.uploaded_at) if record is None else None

    await bus.store(subjects.IMAGES).mutate(imagecatalog.image_key(name), first)


async def remove_versions(bus: Bus, name: str, tags: list[str]) -> None:
    """Drop versions; the image's index goes when its last version does."""
    versions = bus.store(subjects.IMAGE_VERSIONS)
    for tag in tags:
        await versions.delete(imagecatalog.version_key(name, tag))
    if not await imagecatalog.versions(bus, name):
        await bus.store(subjects.IMAGES).delete(imagecatalog.image_key(name))


async def users(bus: Bus, name: str, tag: str = "") -> list[str]:
    """Deployments (not being deleted) that run or may return to catalog image `name` (in version
    `tag`): the desired spec, and the `fallback` an update in flight goes back to if it fails."""
    found = []
    for container in await DesiredStore(bus).everything():
        if container.state == DesiredState.ABSENT:
            continue
        specs = [container.spec, *([container.fallback] if container.fallback else [])]
        if any(uses(spec, name, tag) for spec in specs):
            found.append(container.name)
    return sorted(found)


def uses(spec: ContainerSpec, name: str, tag: str) -> bool:
    """Whether `spec` runs image `name` (in version `tag`, or in any version when `tag` is empty)."""
    return spec.image == name and (not tag or spec.imageversion == tag)
