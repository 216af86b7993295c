"""Image interfaces (contract §三): upload is a job for the imager; search reads the catalog;
deletes are a request/reply to the imager, the one service that talks to the registry."""

from __future__ import annotations

from typing import Any

import nats.errors
from fastapi import APIRouter, Query, Request

from tingyu.api import envelope, state
from tingyu.api.deps import BusDep, SettingsDep
from tingyu.api.uploads import store_upload
from tingyu.common import jobs, subjects, timefmt
from tingyu.common.bus import kv_values
from tingyu.common.errors import (
    ImageNotFound,
    ImageVersionExists,
    ImageVersionNotFound,
    InvalidParameter,
    MissingParameter,
    TingyuError,
    Unavailable,
)
from tingyu.common.models.images import ImagePushCommand, ImageRecord, ImagerReply, ImagerRequest
from tingyu.common.models.jobs import JobKind
from tingyu.common.names import is_image_name, is_image_tag

router = APIRouter(prefix="/image", tags=["images"])


def image_view(record: ImageRecord, timezone: str) -> dict[str, Any]:
    """One catalog image on the wire, versions newest first."""
    versions = sorted(record.versions.values(), key=lambda v: v.uploaded_at, reverse=True)
    return {
        "name": record.name,
        "createtime": timefmt.to_wire(record.created_at, timezone),
        "versions": [
            {
                "version": v.version,
                "digest": v.digest,
                "size": v.size,
                "layers": v.layers,
                "uploadtime": timefmt.to_wire(v.uploaded_at, timezone),
                "detail": v.detail,
                "image_url": v.image_url,
            }
            for v in versions
        ],
    }


def _required(value: str, name: str) -> str:
    value = value.strip()
    if not value:
        raise MissingParameter(f"缺少必填参数: {name}")
    return value


@router.post("/uploadImage")
async def upload_image(
    *,
    request: Request,
    bus: BusDep,
    settings: SettingsDep,
    image_name: str = Query(""),
    version: str = Query(""),
    image_url: str = Query(""),
    detail: str = Query(""),
) -> dict[str, Any]:
    """Upload a `docker save` tar (multipart field `file` or an application/x-tar body); answers a jobid."""
    name, tag = _required(image_name, "image_name"), _required(version, "version")
    if not is_image_name(name):
        raise InvalidParameter(f"参数值不合法: image_name '{name[:200]}' is not a valid repository name")
    if not is_image_tag(tag):
        raise InvalidParameter(f"参数值不合法: version '{tag[:200]}' is not a valid tag")
    for text, field in ((detail, "detail"), (image_url, "image_url")):
        if len(text.encode()) > settings.max_detail_bytes:
            raise InvalidParameter(
                f"参数值不合法: {field} is longer than {settings.max_detail_bytes} bytes "
                "(TINGYU_API_MAX_DETAIL_BYTES)"
            )
    record = await state.image(bus, name)
    if record is not None and tag in record.versions:
        raise ImageVersionExists(f"镜像版本已存在! {name}:{tag}")
    job_id = jobs.job_id()
    size = await store_upload(bus, request, job_id, settings.max_upload_bytes)
    command = ImagePushCommand(
        job_id=job_id,
        name=name,
        version=tag,
        upload=job_id,
        size=size,
        detail=detail,
        image_url=image_url,
        issued_at=timefmt.now(),
    )
    await jobs.submit_job(
        bus, kind=JobKind.IMAGE, op="push", subject_of=subjects.image_command, command=command, job_id=job_id
    )
    return envelope.ok({"jobid": job_id, "image": name, "version": tag, "size": size})


@router.get("/search")
async def search(
    bus: BusDep,
    settings: SettingsDep,
    wordKey: str | None = Query(None),
    wordkey: str = Query(""),
) -> dict[str, Any]:
    """Catalog images whose name contains the keyword (case-insensitive); all of them when it is empty."""
    word = (wordKey if wordKey is not None else wordkey).strip().lower()
    records = await kv_values(await bus.kv(subjects.IMAGES), ImageRecord)
    found = sorted((r for r in records if word in r.name.lower()), key=lambda r: r.name)
    return envelope.ok([image_view(r, settings.platform.timezone) for r in found])


@router.delete("/deleteByImageVersion")
async def delete_by_image_version(
    bus: BusDep,
    settings: SettingsDep,
    image: str = Query(""),
    imageVersion: str = Query(""),
) -> dict[str, Any]:
    """Delete one version from the registry and the catalog; refused while containers use it."""
    name, tag = _required(image, "image"), _required(imageVersion, "imageVersion")
    if not is_image_tag(tag):
        raise ImageVersionNotFound(f"镜像版本不存在! {name}:{tag}")
    return await _delete(bus, settings.bus_timeout_s, name, tag)


@router.delete("/deleteByImage")
async def delete_by_image(bus: BusDep, settings: SettingsDep, image: str = Query("")) -> dict[str, Any]:
    """Delete an image with all its versions; refused while any container uses one of them."""
    return await _delete(bus, settings.bus_timeout_s, _required(image, "image"), "")


async def _delete(bus: BusDep, timeout: float, name: str, tag: str) -> dict[str, Any]:
    if not is_image_name(name):
        raise ImageNotFound(f"镜像不存在! {name}")
    request = ImagerRequest(op="delete", name=name, version=tag)
    try:
        reply = await bus.request(subjects.IMAGER_QUERY, request, ImagerReply, timeout=timeout)
    except nats.errors.NoRespondersError as exc:
        raise Unavailable(detail="no imager is running") from exc
    if reply.code != "200":
        raise error_of(reply)
    return envelope.ok(reply.data)


def error_of(reply: ImagerReply) -> TingyuError:
    """The domain error a failed reply stands for (same TY code and message)."""
    pending: list[type[TingyuError]] = [TingyuError]
    while pending:
        kind = pending.pop()
        if kind.code == reply.code:
            return kind(reply.msg, detail=str(reply.data.get("detail") or "") or None)
        pending.extend(kind.__subclasses__())
    return TingyuError(reply.msg)
