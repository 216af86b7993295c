"""The file interfaces' answers (contract §七)."""

from __future__ import annotations

from pydantic import BaseModel, Field


class FileJob(BaseModel):
    jobid: str


class FileState(BaseModel):
    """Where a file job stands; `url` streams the file once it is done."""

    name: str
    size: int | None
    sha256: str | None
    state: int = Field(description="0 queued, 1 dispatched, 2 running, 3 succeeded, 4 failed")
    url: str | None
