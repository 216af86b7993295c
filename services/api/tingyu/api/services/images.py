"""Images (contract §三): an upload is a job for the imager; search reads the catalog; deletes are a
request/reply to the imager, the one service that talks to the registry."""

from __future__ import annotations

import nats.errors
from starlette.requests import Request

from tingyu.api import params, reads, texts
from tingyu.api.config import ApiSettings
from tingyu.api.schemas.images import ImageDeleted, ImageUploaded, ImageView, VersionView
from tingyu.api.uploads import store_upload
from tingyu.common import subjects, timefmt
from tingyu.common.bus import Bus, responders
from tingyu.common.errors import Unavailable
from tingyu.common.jobs import JobStore, job_id
from tingyu.common.models.images import ImagePushCommand, ImageRecord, ImagerReply, ImagerRequest
from tingyu.common.names import is_image_name, is_image_tag


def image_view(record: ImageRecord, timezone: str) -> ImageView:
    """One catalog image, versions newest first."""
    versions = sorted(record.versions.values(), key=lambda v: v.uploaded_at, reverse=True)
    return ImageView(
        name=record.name,
        createtime=timefmt.to_wire(record.created_at, timezone),
        versions=[
            VersionView(
                version=v.version,
                digest=v.digest,
                size=v.size,
                layers=v.layers,
                uploadtime=timefmt.to_wire(v.uploaded_at, timezone),
                detail=v.detail,
                image_url=v.image_url,
            )
            for v in versions
        ],
    )


async def upload(
    bus: Bus, settings: ApiSettings, request: Request, target: tuple[str, str], notes: params.UploadNotes
) -> ImageUploaded:
    """Store the request's tar and submit the job that pushes it as `name:tag`."""
    name, tag = target
    record = await reads.image(bus, name)
    if record is not None and tag in record.versions:
        raise texts.version_exists(name, tag)
    upload_id = job_id()
    size = await store_upload(bus, request, upload_id, settings.max_upload_bytes)
    command = ImagePushCommand(
        job_id=upload_id,
        name=name,
        version=tag,
        upload=upload_id,
        size=size,
        detail=notes.detail,
        image_url=notes.image_url,
        issued_at=timefmt.now(),
    )
    await JobStore(bus).submit(command)
    return ImageUploaded(jobid=upload_id, image=name, version=tag, size=size)


async def search(bus: Bus, settings: ApiSettings, word: str) -> list[ImageView]:
    """Catalog images whose name contains `word` (lower case), by name."""
    found = sorted((r for r in await reads.all_images(bus) if word in r.name.lower()), key=lambda r: r.name)
    return [image_view(r, settings.platform.timezone) for r in found]


async def delete_version(bus: Bus, settings: ApiSettings, image: str, version: str) -> ImageDeleted:
    """Delete one version from the registry and the catalog; refused while containers use it."""
    name, tag = params.required(image, "image"), params.required(version, "imageVersion")
    if not is_image_tag(tag):
        raise texts.version_not_found(name, tag)
    return await _delete(bus, settings, name, tag)


async def delete_image(bus: Bus, settings: ApiSettings, image: str) -> ImageDeleted:
    """Delete an image with all its versions; refused while any container uses one of them."""
    return await _delete(bus, settings, params.required(image, "image"), "")


async def _delete(bus: Bus, settings: ApiSettings, name: str, tag: str) -> ImageDeleted:
    if not is_image_name(name):
        raise texts.image_not_found(name)
    request = ImagerRequest(op="delete", name=name, version=tag)
    try:
        reply = await responders.call(
            bus, subjects.IMAGER_QUERY, request, ImagerReply, settings.bus_timeout_s
        )
    except nats.errors.NoRespondersError as exc:
        raise Unavailable(detail="no imager is running") from exc
    return ImageDeleted.model_validate(reply.model_dump())
