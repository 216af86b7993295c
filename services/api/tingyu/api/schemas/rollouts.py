"""The rollout interfaces' answers (contract §二 updateByInherit, and the rollout reads and controls)."""

from __future__ import annotations

from pydantic import BaseModel, Field

from tingyu.api.envelope import Envelope


class RolloutAccepted(Envelope[None]):
    """`data` stays null as the contract shows; the job id is an extra key old clients ignore."""

    jobid: str = Field(description="Extension: the rollout's job, in /task/status")


class RolloutMemberView(BaseModel):
    """One targeted container: pending, issued (its upgrade in flight), updated or failed."""

    deploymentname: str
    uuid: str = Field(description="The machine's uuid")
    state: str = Field(description="pending, issued, updated or failed")
    jobid: str = Field(description="Its upgrade job ('' until issued, or when it was at the version already)")
    message: str


class RolloutView(BaseModel):
    """Extension: a rollout's last run, its progress and members (GET /container/rollout and its controls)."""

    rolloutid: str
    area: str
    operator: str
    image: str
    imageversion: str
    percent: float
    status: str = Field(description="running, paused, succeeded, failed, aborted or superseded")
    message: str
    total: int = Field(description="Containers of the image in the area and operator now")
    target: int = Field(description="How many of them the percent asks for")
    updated: int
    failed: int
    inflight: int
    pending: int
    jobids: list[str] = Field(description="The updateByInherit jobs of this run")
    createtime: str
    updatetime: str
    members: list[RolloutMemberView]
