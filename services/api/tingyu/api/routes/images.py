"""Image interfaces (contract §三): upload is a job for the imager; search reads the catalog;
deletes are a request/reply to the imager, the one service that talks to the registry."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Request

from tingyu.api.deps import BusDep, SettingsDep, caller, fleet_operator
from tingyu.api.envelope import Envelope, EnvelopeRoute, ok
from tingyu.api.params import SearchWord, UploadNotesDep, UploadTarget
from tingyu.api.schemas.images import ImageDeleted, ImageUploaded, ImageView
from tingyu.api.services import images

router = APIRouter(
    prefix="/image", tags=["images"], route_class=EnvelopeRoute, dependencies=[Depends(caller)]
)
# Images are shared by every area: changing them needs an operator token of every area.
CHANGE = [Depends(fleet_operator)]


@router.post("/uploadImage", response_model=Envelope[ImageUploaded], dependencies=CHANGE)
async def upload_image(
    *,
    request: Request,
    bus: BusDep,
    settings: SettingsDep,
    target: UploadTarget,
    notes: UploadNotesDep,
) -> Envelope[ImageUploaded]:
    """Upload a `docker save` tar (multipart field `file` or an application/x-tar body); answers a jobid."""
    return ok(await images.upload(bus, settings, request, target, notes))


@router.get("/search", response_model=Envelope[list[ImageView]])
async def search(bus: BusDep, settings: SettingsDep, word: SearchWord) -> Envelope[list[ImageView]]:
    """Catalog images whose name contains the keyword (case-insensitive); all of them when it is empty."""
    return ok(await images.search(bus, settings, word))


@router.delete("/deleteByImageVersion", response_model=Envelope[ImageDeleted], dependencies=CHANGE)
async def delete_by_image_version(
    bus: BusDep, settings: SettingsDep, image: str = Query(""), imageVersion: str = Query("")
) -> Envelope[ImageDeleted]:
    """Delete one version from the registry and the catalog; refused while containers use it."""
    return ok(await images.delete_version(bus, settings, image, imageVersion))


@router.delete("/deleteByImage", response_model=Envelope[ImageDeleted], dependencies=CHANGE)
async def delete_by_image(
    bus: BusDep, settings: SettingsDep, image: str = Query("")
) -> Envelope[ImageDeleted]:
    """Delete an image with all its versions; refused while any container uses one of them."""
    return ok(await images.delete_image(bus, settings, image))
