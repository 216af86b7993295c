"""File interfaces (contract §七): fetch a file out of a running container as a job, then download it.

Errors on these routes take the contract's own shape, `{msg, code: 500, error, tycode}` (see
docs/files.md); `ContractErrorRoute` renders every raised domain error that way.
"""

from __future__ import annotations

import posixpath
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse
from nats.js import errors as js_errors
from nats.js.api import ObjectInfo

from tingyu.api import envelope, state
from tingyu.api.deps import BusDep, SettingsDep
from tingyu.common import jobs, subjects, timefmt
from tingyu.common.bus import Bus, object_chunks
from tingyu.common.errors import (
    DeploymentNotFound,
    FileFetchError,
    FileNotReady,
    InvalidParameter,
    JobNotFound,
    MissingParameter,
    PayloadTooLarge,
    TingyuError,
)
from tingyu.common.models.containers import DesiredState
from tingyu.common.models.files import FileFetchCommand
from tingyu.common.models.jobs import Job, JobKind, JobState
from tingyu.common.models.nodes import NodeStatus
from tingyu.common.names import is_deployment_name, is_job_id

router = APIRouter(prefix="/file", tags=["files"], route_class=envelope.ContractErrorRoute)
downloads = APIRouter(prefix="/file", tags=["files"], route_class=envelope.ContractDownloadRoute)

MAX_PATH = 4096
_FAILURES: dict[str, type[TingyuError]] = {PayloadTooLarge.code: PayloadTooLarge}


def _check_path(filepath: str) -> None:
    if not filepath:
        raise MissingParameter("缺少必填参数: filepath", detail="filepath is required")
    if "\0" in filepath or len(filepath) > MAX_PATH:
        raise InvalidParameter("参数值不合法: filepath", detail="filepath is not a valid path")
    if not filepath.startswith("/"):
        raise InvalidParameter(
            f"参数值不合法: filepath 必须是绝对路径: {filepath}",
            detail=f"filepath must be absolute: {filepath}",
        )
    if posixpath.normpath(filepath) != filepath or filepath.startswith("//"):
        raise InvalidParameter(
            f"参数值不合法: filepath 不是规范路径: {filepath}",
            detail=f"filepath must be normalised (no '.', '..', '//' or trailing '/'): {filepath}",
        )


async def _node_of(bus: Bus, name: str) -> str:
    """The machine the deployment lives on, if it exists and that machine is Ready."""
    if not name:
        raise MissingParameter("缺少必填参数: name", detail="name is required")
    if not is_deployment_name(name):
        raise InvalidParameter(
            f"参数值不合法: name {name!r}", detail=f"name is not a DNS-1123 label: {name!r}"
        )
    owner = await state.claim(bus, name)
    desired = (await state.desired(bus, owner.node_uuid)).containers.get(name) if owner else None
    if owner is None or desired is None or desired.state == DesiredState.ABSENT:
        raise DeploymentNotFound(f"容器不存在: {name}", detail=f'deployments.apps "{name}" not found')
    node = await state.find_node(bus, owner.node_uuid)
    if node is None or node.status != NodeStatus.READY:
        raise FileFetchError(
            f"文件获取失败: 容器 {name} 所在机器未就绪", detail=f"Node is not ready: {owner.node_uuid}"
        )
    return owner.node_uuid


@router.post("/downloadfile")
async def download_file(
    bus: BusDep,
    name: str = Query("", description="The container's deploymentname"),
    filepath: str = Query("", description="Absolute path of a regular file in the container"),
    maxbytes: int = Query(
        0, ge=0, description="Extension: refuse files above this size (never above the machine's limit)"
    ),
) -> dict[str, Any]:
    """Start copying one file out of a running container; `data.jobid` follows it in getResponseByJobId."""
    _check_path(filepath)
    node_uuid = await _node_of(bus, name)
    command = FileFetchCommand(
        job_id=jobs.job_id(),
        name=name,
        node_uuid=node_uuid,
        path=filepath,
        max_bytes=maxbytes,
        issued_at=timefmt.now(),
    )
    await jobs.submit_job(
        bus,
        kind=JobKind.FILE,
        op="download",
        subject_of=subjects.file_command,
        command=command,
        job_id=command.job_id,
        deploymentname=name,
        node_uuid=node_uuid,
    )
    return envelope.ok({"jobid": command.job_id})


async def _file_job(bus: Bus, job_id: str) -> Job:
    if not job_id:
        raise MissingParameter("缺少必填参数: jobId", detail="jobId is required")
    job = await state.job(bus, job_id) if is_job_id(job_id) else None
    if job is None or job.kind != JobKind.FILE:
        raise JobNotFound(f"任务不存在: {job_id}", detail=f"no file job {job_id} (unknown or expired)")
    if job.state == JobState.FAILED:
        failure = _FAILURES.get(str(job.result.get("code", "")), FileFetchError)
        raise failure(f"{failure.default_msg}: {job.message}", detail=job.message)
    return job


async def _stored(bus: Bus, job: Job) -> ObjectInfo:
    """The stored file of a finished job; TY0051 once the store has let it expire."""
    store = await bus.objects(subjects.FILES)
    try:
        return await store.get_info(str(job.result.get("object") or job.job_id))
    except js_errors.NotFoundError:
        hours = subjects.FILES.ttl_s / 3600
        raise FileNotReady(
            "文件已过期,请重新下载",
            detail=f"the file of job {job.job_id} has expired (files are kept {hours:g}h)",
        ) from None


@router.post("/getResponseByJobId")
async def response_by_job_id(
    bus: BusDep,
    settings: SettingsDep,
    jobId: str = Query("", description="The jobid downloadfile answered"),
) -> dict[str, Any]:
    """Where a file job stands: name, size, sha256, state, and once done the url that streams the file."""
    job = await _file_job(bus, jobId.strip())
    result = job.result
    data: dict[str, Any] = {
        "name": result.get("name") or posixpath.basename(str(result.get("path", ""))),
        "size": result.get("size"),
        "sha256": result.get("sha256"),
        "state": int(job.state),
        "url": None,
    }
    if job.state == JobState.SUCCEEDED:
        await _stored(bus, job)
        data["url"] = f"{settings.root_path}/file/content/{job.job_id}"
    return envelope.ok(data, "success" if data["url"] else "文件准备中")


@downloads.get("/content/{job_id}")
async def content(bus: BusDep, job_id: str) -> StreamingResponse:
    """Stream the bytes of a fetched file (chunk by chunk from the object store)."""
    job = await _file_job(bus, job_id)
    if job.state != JobState.SUCCEEDED:
        raise FileNotReady(
            f"文件尚未就绪: {job_id}", detail=f"job {job_id} has not finished (state {int(job.state)})"
        )
    info = await _stored(bus, job)
    name = str(job.result.get("name") or job.job_id)
    headers = {
        "Content-Disposition": _disposition(name),
        "Content-Length": str(info.size or 0),
        "X-Tingyu-Sha256": str(job.result.get("sha256", "")),
    }
    return StreamingResponse(
        object_chunks(bus, subjects.FILES, info), media_type="application/octet-stream", headers=headers
    )


def _disposition(name: str) -> str:
    """An attachment header every client reads: an ASCII fallback plus RFC 5987 for the real name."""
    fallback = name.encode("ascii", "replace").decode().replace('"', "_").replace("?", "_")
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(name)}"
