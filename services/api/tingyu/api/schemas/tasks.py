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


class JobLogLine(BaseModel):
    """One line a platform service logged while working on the job."""

    time: str = Field(description="When it was logged (yyyy-MM-dd HH:mm:ss, the platform's time zone)")
    service: str = Field(description="deployer, imager, nodes, metering or api")
    level: str = Field(description="INFO, WARNING, ERROR ...")
    message: str = Field(description="At most 2 KiB; a longer one is cut and ends with ` …[cut]`")


class JobLog(BaseModel):
    """A job's log lines, oldest first (the newest 200 are kept, for 7 days)."""

    jobid: str
    lines: list[JobLogLine]
