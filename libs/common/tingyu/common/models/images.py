"""The image catalog (bucket `ty_images`, key = image name) and image push commands."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from tingyu.common.models.base import Message
from tingyu.common.models.jobs import Command, JobKind


class ImageVersion(Message):
    """One pushed version of an image."""

    version: str
    digest: str = ""  # manifest digest in the registry
    size: int = 0  # bytes of config + layers
    layers: int = 0
    uploaded_at: float
    detail: str = ""
    image_url: str = ""
    job_id: str = ""  # the push that stored it: a redelivered push of the same job is not a duplicate


class ImageRecord(Message):
    """An image and its versions, as the catalog keeps it."""

    name: str
    versions: dict[str, ImageVersion] = Field(default_factory=dict)
    created_at: float


class ImagePushCommand(Command):
    """Push the tar stored in object store `ty_uploads` under `upload` as `<name>:<version>`."""

    kind: ClassVar[JobKind] = JobKind.IMAGE

    job_id: str
    name: str
    version: str
    upload: str  # object name in `ty_uploads`
    size: int = 0  # bytes of the tar as received
    detail: str = ""
    image_url: str = ""
    issued_at: float

    @property
    def job_op(self) -> str:
        return "push"


class ImagerRequest(Message):
    """Request/reply on `IMAGER_QUERY`: `op` is `delete` (a version, or the whole image when empty)."""

    op: str = "delete"
    name: str
    version: str = ""


class ImagerReply(Message):
    """What a delete removed: the image, its catalog versions and the registry manifests (by digest).

    A refused or failed delete is the responder's error reply instead (see `tingyu.common.bus.responders`).
    """

    image: str
    versions: list[str] = Field(default_factory=list)
    manifests: list[str] = Field(default_factory=list)
