"""Turning the (image, imageversion) a client names into the reference an agent pulls."""

from __future__ import annotations

from tingyu.api import reads, texts
from tingyu.common.bus import Bus
from tingyu.common.models.containers import ImagePatch
from tingyu.common.names import has_registry_host, is_full_image, is_image_name, is_image_tag
from tingyu.common.policy import Policy


class UnknownImage(ValueError):
    """The image is neither a full reference nor a catalog version; the text says which."""


async def resolve(bus: Bus, registry: str, image: str, version: str) -> ImagePatch:
    """A full reference (first component is a registry host) is used as given, if the edge policy
    allows its registry; any other name is a catalog image, which must have that version, and
    resolves to `<registry>/<name>:<version>`."""
    if has_registry_host(image):
        if not is_full_image(image):
            raise UnknownImage(
                f"'{texts.cut(image)}' is not a valid image reference (<registry host>/<repository>)"
            )
        if version and not is_image_tag(version):
            raise UnknownImage(f"image version '{texts.cut(version)}' is not valid")
        reference = f"{image}:{version}" if version else image
        refusal = Policy.from_settings(own_registry=registry).image_refusal(reference)
        if refusal:
            raise UnknownImage(refusal)
        return ImagePatch(image=image, imageversion=version, image_ref=reference)
    if not is_image_name(image):
        raise UnknownImage(f"'{texts.cut(image)}' is not a valid image name")
    if not version or not is_image_tag(version):
        raise UnknownImage(f"image version '{texts.cut(version)}' is not valid")
    record = await reads.image(bus, image)
    if record is None:
        raise UnknownImage(f"image '{image}' is not in the catalog")
    if version not in record.versions:
        raise UnknownImage(f"image '{image}' has no version '{version}' in the catalog")
    return ImagePatch(image=image, imageversion=version, image_ref=f"{registry}/{image}:{version}")
