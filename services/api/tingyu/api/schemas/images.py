"""The image interfaces' answers (contract §三)."""

from __future__ import annotations

from pydantic import BaseModel


class VersionView(BaseModel):
    version: str
    digest: str
    size: int
    layers: int
    uploadtime: str
    detail: str
    image_url: str


class ImageView(BaseModel):
    """One catalog image, versions newest first."""

    name: str
    createtime: str
    versions: list[VersionView]


class ImageUploaded(BaseModel):
    """An accepted upload: the job that pushes it."""

    jobid: str
    image: str
    version: str
    size: int


class ImageDeleted(BaseModel):
    """What a delete removed: the versions from the catalog, the manifests from the registry."""

    image: str
    versions: list[str]
    manifests: list[str]
