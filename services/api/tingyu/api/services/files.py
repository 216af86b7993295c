"""Files (contract §七): fetch a file out of a running container as a job, then download it.

Errors here take the contract's own shape on the wire (`ContractErrorRoute`): `msg` in the
contract's language, the English `detail` as its `error`.
"""

from __future__ import annotations

import posixpath
from collections.abc import AsyncIterator

from nats.js import errors as js_errors
from nats.js.api import ObjectInfo

from tingyu.api import reads, texts
from tingyu.api.auth import Principal
from tingyu.api.config import ApiSettings
from tingyu.api.params import FileTarget
from tingyu.api.schemas.files import FileJob, FileState
from tingyu.common import subjects, timefmt
from tingyu.common.bus import Bus, object_chunks
from tingyu.common.errors import (
    FileFetchError,
    PayloadTooLarge,
    TingyuError,
)
from tingyu.common.jobs import JobStore, job_id
from tingyu.common.models.containers import DesiredState
from tingyu.common.models.files import FileFetchCommand
from tingyu.common.models.jobs import Job, JobKind, JobState
from tingyu.common.models.nodes import NodeStatus

_FAILURES: dict[str, type[TingyuError]] = {PayloadTooLarge.code: PayloadTooLarge}


async def within(bus: Bus, caller: Principal, node_uuid: str, what: str) -> None:
    """Refuse (403) a caller limited to areas when the machine is in none of them."""
    if caller.areas:
        node = await reads.find_node(bus, node_uuid)
        area = node.area if node else ""
        if not caller.covers(area):
            raise texts.area_forbidden(what, area, caller.areas)


async def node_of(bus: Bus, name: str, caller: Principal) -> str:
    """The machine the deployment lives on, if it exists, the caller may act there and it is Ready."""
    owner = await reads.claim(bus, name)
    desired = (await reads.desired(bus, owner.node_uuid)).containers.get(name) if owner else None
    if owner is None or desired is None or desired.state == DesiredState.ABSENT:
        raise texts.deployment_gone(name)
    await within(bus, caller, owner.node_uuid, f"container {name}")
    node = await reads.find_node(bus, owner.node_uuid)
    if node is None or node.status != NodeStatus.READY:
        raise texts.file_node_not_ready(name, owner.node_uuid)
    return owner.node_uuid


async def fetch(bus: Bus, target: FileTarget, *, caller: Principal) -> FileJob:
    """Submit the job that copies the file out of its container."""
    node_uuid = await node_of(bus, target.name, caller)
    command = FileFetchCommand(
        job_id=job_id(),
        name=target.name,
        node_uuid=node_uuid,
        path=target.path,
        max_bytes=target.max_bytes,
        issued_at=timefmt.now(),
    )
    await JobStore(bus).submit(command)
    return FileJob(jobid=command.job_id)


async def file_job(bus: Bus, job_id: str, caller: Principal) -> Job:
    """The file job `job_id` (of a machine the caller may act on); a failed one raises the error it
    failed with."""
    if not job_id:
        raise texts.required("jobId", "the jobid downloadfile answered")
    job = await reads.job(bus, job_id)
    if job is None or job.kind != JobKind.FILE:
        raise texts.file_job_unknown(job_id)
    await within(bus, caller, job.node_uuid, f"the file of job {job_id}")
    if job.state == JobState.FAILED:
        failure = _FAILURES.get(str(job.result.get("code", "")), FileFetchError)
        raise texts.file_failed(failure, job.message)
    return job


async def stored(bus: Bus, job: Job) -> ObjectInfo:
    """The stored file of a finished job; TY0051 once the store has let it expire."""
    store = await bus.objects(subjects.FILES)
    try:
        return await store.get_info(str(job.result.get("object") or job.job_id))
    except js_errors.NotFoundError:
        raise texts.file_expired(job.job_id, subjects.FILES.ttl_s / 3600) from None


async def state(bus: Bus, settings: ApiSettings, job_id: str, *, caller: Principal) -> FileState:
    """Where a file job stands; once done (and still stored), the url that streams it."""
    job = await file_job(bus, job_id, caller)
    result = job.result
    url = None
    if job.state == JobState.SUCCEEDED:
        await stored(bus, job)
        url = f"{settings.root_path}/file/content/{job.job_id}"
    return FileState(
        name=result.get("name") or posixpath.basename(str(result.get("path", ""))),
        size=result.get("size"),
        sha256=result.get("sha256"),
        state=int(job.state),
        url=url,
    )


class Download:
    """A finished file: its name, size, digest and its bytes chunk by chunk."""

    def __init__(self, bus: Bus, job: Job, info: ObjectInfo) -> None:
        self.name = str(job.result.get("name") or job.job_id)
        self.size = info.size or 0
        self.sha256 = str(job.result.get("sha256", ""))
        self.chunks: AsyncIterator[bytes] = object_chunks(bus, subjects.FILES, info)


async def download(bus: Bus, job_id: str, *, caller: Principal) -> Download:
    job = await file_job(bus, job_id, caller)
    if job.state != JobState.SUCCEEDED:
        raise texts.file_not_finished(job_id, int(job.state))
    return Download(bus, job, await stored(bus, job))
