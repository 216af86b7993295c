"""Canary rollouts (`/container/updateByInherit`): the accepted command and the deployer's record."""

from __future__ import annotations

import hashlib
from enum import StrEnum
from typing import ClassVar

from pydantic import Field

from tingyu.common.models.base import Message
from tingyu.common.models.containers import ImagePatch
from tingyu.common.models.jobs import Command, JobKind


def rollout_key(area: str, operator: str, image: str) -> str:
    """The rollout id: one rollout per (area, operator, image), whatever the target version."""
    return hashlib.sha256(f"{area}\x1f{operator}\x1f{image}".encode()).hexdigest()


class RolloutCommand(Command):
    """Move `percent` % of the containers running `image` in one area and operator to `patch`."""

    kind: ClassVar[JobKind] = JobKind.ROLLOUT

    job_id: str
    area: str
    operator: str
    image: str
    patch: ImagePatch
    percent: float = Field(ge=0, le=100)
    issued_at: float
    prepull: bool = False  # pre-pull the image onto every targeted machine before the first upgrade

    @property
    def job_op(self) -> str:
        return "rollout"


class RolloutStatus(StrEnum):
    """Where a rollout run stands; every status but `running` and `paused` is final for its run."""

    RUNNING = "running"
    PAUSED = "paused"  # by request: nothing new is issued until it is resumed
    SUCCEEDED = "succeeded"  # every targeted container runs the new version
    FAILED = "failed"  # every targeted container was tried; some failed (fewer than the abort threshold)
    ABORTED = "aborted"  # failures passed the threshold, or aborted by request: nothing more is issued
    SUPERSEDED = "superseded"  # a call with another target version replaced it

    @property
    def final(self) -> bool:
        return self not in (RolloutStatus.RUNNING, RolloutStatus.PAUSED)


class MemberState(StrEnum):
    """One targeted container of a rollout."""

    PENDING = "pending"  # selected, not issued yet (batch full, or its machine is NotReady)
    ISSUED = "issued"  # its upgrade job is in flight
    UPDATED = "updated"
    FAILED = "failed"


class RolloutMember(Message):
    """A targeted container and the upgrade job that moves it."""

    name: str
    node_uuid: str
    state: MemberState = MemberState.PENDING
    job_id: str = ""
    message: str = ""


class Rollout(Message):
    """Bucket `ty_rollouts`, key = rollout id (a hash of area, operator and image).

    `run` is the job id of the call that started the current target version; `members`
    are kept in rollout order, so extending the percentage only ever appends.
    """

    rollout_id: str
    run: str
    area: str
    operator: str
    image: str
    patch: ImagePatch
    percent: float
    total: int = 0
    target: int = 0
    status: RolloutStatus = RolloutStatus.RUNNING
    message: str = ""
    members: dict[str, RolloutMember] = Field(default_factory=dict)
    jobs: list[str] = Field(default_factory=list)  # every accepted call of this run, first = `run`
    prepull: bool = False  # no upgrade is issued before the run's pre-pull job has finished
    created_at: float
    updated_at: float
