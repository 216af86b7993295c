"""Answers and bodies of the remote operations (extensions of the contract; docs/remote.md)."""

from __future__ import annotations

from pydantic import BaseModel, Field

from tingyu.api.envelope import Envelope


class LogLines(BaseModel):
    """The last lines of a container's stdout and stderr, oldest first."""

    name: str
    lines: list[str]
    truncated: bool = Field(False, description="older lines were left out by the line or byte limit")


class ExecBody(BaseModel):
    """A command to run in a container and wait for."""

    name: str = Field("", description="The deploymentname")
    cmd: list[str] = Field(default_factory=list, description='The command and its arguments: ["echo", "hi"]')
    timeout: float = Field(0, ge=0, description="Seconds to wait at most (0: the configured limit)")


class ExecResult(BaseModel):
    """A finished command: what it printed (stdout and stderr as they came) and its exit code."""

    name: str
    exit_code: int
    output: str
    truncated: bool = Field(False, description="the output was longer than the machine's limit")


class JobAccepted(Envelope[None]):
    """`data` is null, as for updateByInherit; `jobid` follows the job in /task/status."""

    jobid: str = Field(description="The job, in /task/status")
