"""File interfaces (contract §七): fetch a file out of a running container as a job, then download it.

Errors on these routes take the contract's own shape, `{msg, code: 500, error, tycode}` (see
docs/files.md); `ContractErrorRoute` renders every raised domain error that way.
"""

from __future__ import annotations

from urllib.parse import quote

from fastapi import APIRouter, Depends, Query
from fastapi.responses import StreamingResponse

from tingyu.api.deps import BusDep, Operator, SettingsDep, operator
from tingyu.api.envelope import ContractDownloadRoute, ContractErrorBody, ContractErrorRoute, Envelope, ok
from tingyu.api.params import FileTargetDep
from tingyu.api.schemas.files import FileJob, FileState
from tingyu.api.services import files

# A file out of a container may hold anything the container holds: operators only, in their areas.
ONLY_OPERATORS = [Depends(operator)]
router = APIRouter(
    prefix="/file", tags=["files"], route_class=ContractErrorRoute, dependencies=ONLY_OPERATORS
)
downloads = APIRouter(
    prefix="/file", tags=["files"], route_class=ContractDownloadRoute, dependencies=ONLY_OPERATORS
)

REFUSED = {"model": ContractErrorBody, "description": "No such file job, or its file has expired"}


@router.post("/downloadfile", response_model=Envelope[FileJob])
async def download_file(who: Operator, bus: BusDep, target: FileTargetDep) -> Envelope[FileJob]:
    """Start copying one file out of a running container; `data.jobid` follows it in getResponseByJobId."""
    return ok(await files.fetch(bus, target, caller=who))


@router.post("/getResponseByJobId", response_model=Envelope[FileState])
async def response_by_job_id(
    who: Operator,
    bus: BusDep,
    settings: SettingsDep,
    jobId: str = Query("", description="The jobid downloadfile answered"),
) -> Envelope[FileState]:
    """Where a file job stands: name, size, sha256, state, and once done the url that streams the file."""
    state = await files.state(bus, settings, jobId.strip(), caller=who)
    return ok(state, "success" if state.url else "文件准备中")


@downloads.get(
    "/content/{job_id}",
    response_class=StreamingResponse,
    responses={200: {"content": {"application/octet-stream": {}}}, 404: REFUSED},
)
async def content(who: Operator, bus: BusDep, job_id: str) -> StreamingResponse:
    """Stream the bytes of a fetched file (chunk by chunk from the object store)."""
    found = await files.download(bus, job_id, caller=who)
    headers = {
        "Content-Disposition": disposition(found.name),
        "Content-Length": str(found.size),
        "X-Tingyu-Sha256": found.sha256,
    }
    return StreamingResponse(found.chunks, media_type="application/octet-stream", headers=headers)


def disposition(name: str) -> str:
    """An attachment header every client reads: an ASCII fallback plus RFC 5987 for the real name."""
    fallback = name.encode("ascii", "replace").decode().replace('"', "_").replace("?", "_")
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(name)}"
