"""The image catalog (bucket `ty_images`, key = image name) and image push commands."""

from __future__ import annotations

from pydantic import Field

from tingyu.common.models.base import Message


class ImageVersion(Message):
    """One pushed version of an image."""

    version: str
    digest: str = ""  # manifest digest in the registry
    size: int = 0  # bytes of config + layers
    layers: int = 0
    uploaded_at: float
    detail: str = ""
    image_url: str = ""


class ImageRecord(Message):
    """An image and its versions, as the catalog keeps it."""

    name: str
    versions: dict[str, ImageVersion] = Field(default_factory=dict)
    created_at: float
