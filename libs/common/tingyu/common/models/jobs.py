"""Jobs: every asynchronous operation has one, followed through `/task/status`."""

from __future__ import annotations

from enum import IntEnum, StrEnum
from typing import Any, ClassVar

from pydantic import Field

from tingyu.common.models.base import Message


class JobState(IntEnum):
    """Job states on the wire (`state` in `/task/status`)."""

    QUEUED = 0  # accepted and durable, not yet taken by its worker
    DISPATCHED = 1  # desired state written; waiting for the machine
    RUNNING = 2  # the machine (or worker) is applying it
    SUCCEEDED = 3
    FAILED = 4  # `message` says why (including timeouts and superseded operations)

    @property
    def final(self) -> bool:
        return self in (JobState.SUCCEEDED, JobState.FAILED)


class JobKind(StrEnum):
    """Which worker owns the job."""

    CONTAINER = "container"
    IMAGE = "image"
    ROLLOUT = "rollout"
    FILE = "file"
    PREPULL = "prepull"


class Job(Message):
    """Bucket `ty_jobs`, key = job id."""

    job_id: str
    kind: JobKind
    op: str
    state: JobState = JobState.QUEUED
    message: str = ""
    deploymentname: str = ""
    node_uuid: str = ""
    nodename: str = ""
    revision: int = 0  # the desired revision that completes it (container jobs)
    goal: str = ""  # the observed phase that completes it (container jobs)
    created_at: float
    updated_at: float
    result: dict[str, Any] = Field(default_factory=dict)


class JobDeadline(Message):
    """Stream `TY_JOB_DEADLINES`: fail `job_id` if it is not final by `deadline` (epoch seconds).

    `dispatched_at` (epoch seconds; 0 in timers written before it existed): when the machine was
    nudged; while no report has moved the job on, the nudge is sent again at doubling intervals."""

    job_id: str
    deadline: float
    dispatched_at: float = 0.0


class Command(Message):
    """A durable command: every one has a job, and knows the kind, operation and target of it."""

    kind: ClassVar[JobKind]
    job_id: str

    @property
    def job_op(self) -> str:
        return self.kind.value

    @property
    def job_target(self) -> tuple[str, str]:
        """The (deployment name, machine uuid) the job is about; empty where it is about neither."""
        return "", ""
