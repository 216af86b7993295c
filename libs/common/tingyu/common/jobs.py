"""Accepting a command: record its job (state 0), then publish it durably with the job id as message id.

The API submits operators' commands this way; the deployer submits the per-container
commands of a rollout the same way, so every operation has one job and one message id.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable

from nats.js import errors as js_errors

from tingyu.common import subjects, timefmt
from tingyu.common.bus import Bus, kv_delete
from tingyu.common.models.base import Message
from tingyu.common.models.jobs import Job, JobKind, JobState
from tingyu.common.names import new_job_id, nodename_of


class Refused(Exception):
    """A submission's guard said no; the text says why (per-item answers carry it)."""


async def submit_job(
    bus: Bus,
    *,
    kind: JobKind,
    op: str,
    subject_of: Callable[[str], str],
    command: Message,
    job_id: str,
    deploymentname: str = "",
    node_uuid: str = "",
    guard: Callable[[], Awaitable[str]] | None = None,
) -> Job:
    """Write the job record, then publish; the job exists before any worker can see the command.

    `guard` runs between the two (e.g. claiming a name); a non-empty answer refuses the command:
    the record is removed and `Refused` raised. If publishing fails the job is marked failed, so
    `/task/status` never shows a phantom.
    """
    now = timefmt.now()
    job = Job(
        job_id=job_id,
        kind=kind,
        op=op,
        deploymentname=deploymentname,
        node_uuid=node_uuid,
        nodename=nodename_of(node_uuid) if node_uuid else "",
        created_at=now,
        updated_at=now,
    )
    jobs = await bus.kv(subjects.JOBS)
    # Submitted before (a retry with the same job id): the publish below is deduplicated too.
    with contextlib.suppress(js_errors.KeyWrongLastSequenceError):
        await jobs.create(job_id, job.to_bytes())
    refusal = await guard() if guard else ""
    if refusal:
        await kv_delete(jobs, job_id)
        raise Refused(refusal)
    try:
        await bus.publish(subject_of(job_id), command, msg_id=job_id)
    except Exception:
        failed = job.model_copy(update={"state": JobState.FAILED, "message": "command could not be queued"})
        await jobs.put(job_id, failed.to_bytes())
        raise
    return job


def job_id() -> str:
    """A fresh job id."""
    return new_job_id()
