"""The task interface's answer (contract §一)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from tingyu.api.envelope import Absent


class TaskState(BaseModel):
    """One job: the contract's fields (deploymentname, state, uuid = nodename, deviceid = machine uuid)
    and extensions; an unknown job id answers only code 500, jobid and message."""

    code: int
    jobid: str
    deploymentname: str | Absent = None
    state: int | Absent = Field(
        default=None, description="0 queued, 1 dispatched, 2 running, 3 succeeded, 4 failed"
    )
    uuid: str | Absent = Field(default=None, description="The machine's nodename")
    deviceid: str | Absent = Field(default=None, description="The machine's uuid")
    kind: str | Absent = None
    op: str | Absent = None
    message: str
    createtime: str | Absent = None
    updatetime: str | Absent = None
    result: dict[str, Any] | Absent = Field(default=None, description="What the worker reported, when it did")
