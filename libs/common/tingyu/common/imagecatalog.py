"""The image catalog's layout in bucket `ty_images`: one record per version, and a small index
record per image, so no record grows with the number of versions.

- key `<image>`: the image's index (`ImageRecord` with no versions: its name and when it was
  first uploaded), which search and list walk;
- key `<image>.<version>`: one `ImageVersion`.

A '.' in an image name or a version is written `=2E` (neither may hold '=', so the key is exact and
reversible): an index key is one token, a version key two, and `<image>.*` lists one image's
versions. Records of the older layout (every version inside the image's record) are split by
`migrate` when the imager starts.
"""

from __future__ import annotations

import logging

from pydantic import Field

from tingyu.common import subjects
from tingyu.common.bus import Bus
from tingyu.common.models.base import Message
from tingyu.common.models.images import ImageRecord, ImageVersion

log = logging.getLogger(__name__)

_DOT = "=2E"


def token(text: str) -> str:
    """An image name or version as one key token."""
    return text.replace(".", _DOT)


def untoken(text: str) -> str:
    return text.replace(_DOT, ".")


def image_key(name: str) -> str:
    return token(name)


def version_key(name: str, version: str) -> str:
    return f"{token(name)}.{token(version)}"


async def index(bus: Bus, name: str) -> ImageRecord | None:
    """The image's index record (no versions), or None."""
    return await bus.store(subjects.IMAGES).get(image_key(name))


async def versions(bus: Bus, name: str) -> dict[str, ImageVersion]:
    """Every version of one image, by tag."""
    found = await bus.store(subjects.IMAGE_VERSIONS).entries(f"{image_key(name)}.*")
    return {entry.version: entry for entry, _ in found.values()}


async def read_image(bus: Bus, name: str) -> ImageRecord | None:
    """The image with its versions, as the routes answer it; None when not in the catalog."""
    record = await index(bus, name)
    if record is None:
        return None
    return record.model_copy(update={"versions": await versions(bus, name)})


async def read_all(bus: Bus) -> list[ImageRecord]:
    """Every image with its versions (two scans: the index keys, then the version keys)."""
    records = {untoken(key): record for key, record in (await bus.store(subjects.IMAGES).items("*")).items()}
    for key, entry in (await bus.store(subjects.IMAGE_VERSIONS).items("*.*")).items():
        record = records.get(untoken(key.partition(".")[0]))
        if record is not None:
            record.versions[entry.version] = entry
    return list(records.values())


class _Legacy(Message):
    """Any `ty_images` record read leniently: a legacy one holds its versions."""

    name: str = ""
    created_at: float = 0.0
    versions: dict[str, ImageVersion] = Field(default_factory=dict)


_LEGACY = subjects.BucketSpec(subjects.IMAGES.name, _Legacy, max_bytes=subjects.IMAGES.max_bytes)


async def migrate(bus: Bus) -> int:
    """Split every legacy per-image record into an index record and one record per version.
    Idempotent: versions are written before the index replaces the legacy record."""
    legacy = bus.store(_LEGACY)
    split = 0
    for key, (record, _) in (await legacy.entries(">")).items():
        if not record.versions or not record.name:
            continue
        for tag, entry in record.versions.items():
            await bus.store(subjects.IMAGE_VERSIONS).put(version_key(record.name, tag), entry)
        slim = ImageRecord(name=record.name, created_at=record.created_at)
        await bus.store(subjects.IMAGES).put(image_key(record.name), slim)
        if key != image_key(record.name):
            await legacy.delete(key)
        split += 1
        log.info("catalog record of %s split into %d versions", record.name, len(record.versions))
    return split
