"""The image catalog (bucket `ty_images`) and who uses an image (bucket `ty_desired`)."""

from __future__ import annotations

from tingyu.common import subjects
from tingyu.common.bus import Bus
from tingyu.common.desired import DesiredStore
from tingyu.common.errors import ImageNotFound, ImageVersionExists, ImageVersionNotFound
from tingyu.common.models.containers import ContainerSpec, DesiredState
from tingyu.common.models.images import ImageRecord, ImageVersion


async def image(bus: Bus, name: str) -> ImageRecord:
    """The catalog record; TY0020 when absent."""
    record = await bus.store(subjects.IMAGES).get(name)
    if record is None:
        raise ImageNotFound(detail=f"no image {name} in the catalog")
    return record


async def version(bus: Bus, name: str, tag: str) -> ImageVersion:
    """One version of a catalog image; TY0020 / TY0021 when absent."""
    found = (await image(bus, name)).versions.get(tag)
    if found is None:
        raise ImageVersionNotFound(detail=f"image {name} has no version {tag} in the catalog")
    return found


async def has_version(bus: Bus, name: str, tag: str) -> bool:
    record = await bus.store(subjects.IMAGES).get(name)
    return record is not None and tag in record.versions


async def add_version(bus: Bus, name: str, entry: ImageVersion) -> None:
    """Record a pushed version; TY0024 if another push recorded it first."""

    def change(record: ImageRecord | None) -> ImageRecord:
        record = record or ImageRecord(name=name, created_at=entry.uploaded_at)
        existing = record.versions.get(entry.version)
        if existing is not None and existing.digest != entry.digest:
            raise ImageVersionExists(detail=f"version {name}:{entry.version} is already in the catalog")
        record.versions[entry.version] = entry
        return record

    await bus.store(subjects.IMAGES).mutate(name, change)


async def remove_versions(bus: Bus, name: str, tags: list[str]) -> None:
    """Drop versions; the record goes when its last version does."""
    store = bus.store(subjects.IMAGES)

    def change(record: ImageRecord | None) -> ImageRecord | None:
        if record is None or not any(tag in record.versions for tag in tags):
            return None
        for tag in tags:
            record.versions.pop(tag, None)
        return record

    after = await store.mutate(name, change)
    if after is not None and not after.versions:
        await store.delete(name)


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
