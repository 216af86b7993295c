"""Turning the (image, imageversion) a client names into the reference an agent pulls."""

from __future__ import annotations

from tingyu.api import reads
from tingyu.common.bus import Bus
from tingyu.common.models.containers import ImagePatch
from tingyu.common.names import has_registry_host, is_image_name, is_image_tag


class UnknownImage(ValueError):
    """The image is neither a full reference nor a catalog version; the text says which."""


async def resolve(bus: Bus, registry: str, image: str, version: str) -> ImagePatch:
    """A full reference (first component is a registry host) is used as given; any other name
    is a catalog image, which must have that version, and resolves to `<registry>/<name>:<version>`."""
    if has_registry_host(image):
        return ImagePatch(
            image=image, imageversion=version, image_ref=f"{image}:{version}" if version else image
        )
    if not is_image_name(image):
        raise UnknownImage(f"'{image}' is not a valid image name")
    if not version or not is_image_tag(version):
        raise UnknownImage(f"image version '{version}' is not valid")
    record = await reads.image(bus, image)
    if record is None:
        raise UnknownImage(f"image '{image}' is not in the catalog")
    if version not in record.versions:
        raise UnknownImage(f"image '{image}' has no version '{version}' in the catalog")
    return ImagePatch(image=image, imageversion=version, image_ref=f"{registry}/{image}:{version}")
