"""A job's log lines: what the platform services wrote while working on it."""

from __future__ import annotations

from tingyu.common.models.base import Message


class JobLogLine(Message):
    """Stream `TY_JOBLOG`, subject `ty.joblog.<job id>`: one log record that named the job.

    `message` is at most `JOBLOG_LINE_MAX` bytes; a longer one is cut and ends with `CUT_MARK`.
    """

    time: float  # epoch seconds
    service: str  # deployer, imager, nodes, metering, api
    level: str  # INFO, WARNING, ERROR ...
    message: str
