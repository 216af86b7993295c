"""The rollout interface's answer (contract §二 updateByInherit)."""

from __future__ import annotations

from pydantic import Field

from tingyu.api.envelope import Envelope


class RolloutAccepted(Envelope[None]):
    """`data` stays null as the contract shows; the job id is an extra key old clients ignore."""

    jobid: str = Field(description="Extension: the rollout's job, in /task/status")
