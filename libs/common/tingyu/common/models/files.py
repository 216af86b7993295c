"""File fetch: the command the API accepts and the agent's answer to the deployer."""

from __future__ import annotations

from typing import ClassVar

from tingyu.common.models.base import Message
from tingyu.common.models.jobs import Command, JobKind


class FileFetchCommand(Command):
    """Stream `TY_COMMANDS` (`ty.cmd.file.<job>`) and the agent request: copy `path` out of `name`."""

    kind: ClassVar[JobKind] = JobKind.FILE

    job_id: str
    name: str  # the deployment name, which is the Docker container name
    node_uuid: str
    path: str  # absolute and normalised (the API checks)
    max_bytes: int = 0  # a tighter limit than the machine's; 0: the machine's own
    issued_at: float

    @property
    def job_op(self) -> str:
        return "download"

    @property
    def job_target(self) -> tuple[str, str]:
        return self.name, self.node_uuid


class FileFetchReply(Message):
    """The agent's answer: the object written under the job id, or why there is none."""

    job_id: str
    ok: bool
    message: str = ""  # why it failed, in English, shown to the client
    code: str = ""  # the TY code of the failure (TY0050 or TY0052)
    name: str = ""  # the file's base name
    size: int = 0
    sha256: str = ""  # hex
    object: str = ""  # its name in the `ty_files` object store
