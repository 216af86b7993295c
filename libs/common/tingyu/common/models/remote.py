"""Remote operations on a machine behind NAT: logs, exec and image pre-pull, all over the agent's own
outbound NATS connection (docs/remote.md).

Requests go to `ty.agent.<uuid>.req.<verb>`; a streamed answer (followed logs, an interactive
session's output) goes to the asker's reply inbox, and an interactive session's input to
`ty.agent.<uuid>.req.exec.<session>`.
"""

from __future__ import annotations

import base64
from typing import ClassVar

from pydantic import Field

from tingyu.common.models.base import Message
from tingyu.common.models.jobs import Command, JobKind

MAX_PULL_RATE = 100 * 1024**3  # bytes per second: 100 GiB/s; more is a typo, not a cap

# --- logs ------------------------------------------------------------------------------------------


class LogsRequest(Message):
    """The last `tail` lines of a container's stdout and stderr (since `since`, epoch seconds); with
    `follow` the agent answers once, then sends new lines as `LogFrame`s until `max_s` passes."""

    name: str
    tail: int = 100
    since: float = 0.0  # 0: no lower bound
    timestamps: bool = False
    follow: bool = False
    max_s: float = 0.0  # follow: how long the stream may last (the agent's own maximum applies too)


class LogsReply(Message):
    """The lines read, oldest first; `truncated` when the byte or line limit cut older ones off."""

    name: str
    lines: list[str] = Field(default_factory=list)
    truncated: bool = False


class LogFrame(Message):
    """Followed lines, sent as a request to the follower's inbox: its empty answer is the ack that
    lets the next frame go (no answer: the follower left, the stream stops). `end` closes it."""

    lines: list[str] = Field(default_factory=list)
    end: bool = False
    reason: str = ""


# --- exec ------------------------------------------------------------------------------------------


class ExecRequest(Message):
    """Run `cmd` in container `name`. Not interactive: the agent answers `ExecReply` when it exits.
    Interactive: the agent answers `ExecStarted`, then reads `ExecInput` on the session's subject and
    sends `ExecOutput` to the asker's inbox until the command exits."""

    name: str
    cmd: list[str]
    interactive: bool = False
    tty: bool = False
    session: str = ""  # interactive: the id that names the session's input subject
    inbox: str = ""  # interactive: where the output goes; the reply inbox of this very request (the
    # only inbox a machine's credential lets it answer on)
    cols: int = 0
    rows: int = 0
    timeout_s: float = 0.0  # not interactive: the longest the command may run (0: the agent's limit)


class ExecReply(Message):
    """A finished command: its output (stdout and stderr as they came, bounded) and exit code."""

    name: str
    exit_code: int
    output: str
    truncated: bool = False


class ExecStarted(Message):
    """An interactive session is open."""

    session: str


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def unb64(text: str) -> bytes:
    return base64.b64decode(text.encode()) if text else b""


class ExecInput(Message):
    """Asker -> agent: keystrokes (`data`, base64), a resize (`cols`/`rows` > 0), the end of input
    (`eof`), a keep-alive (all empty) or `close`."""

    data: str = ""
    cols: int = 0
    rows: int = 0
    eof: bool = False
    close: bool = False


class ExecOutput(Message):
    """Agent -> asker: output (`data`, base64), or the end of the session with its exit code (or the
    reason it was ended)."""

    data: str = ""
    end: bool = False
    exit_code: int | None = None
    reason: str = ""


# --- image pre-pull --------------------------------------------------------------------------------


class PrepullCommand(Command):
    """Pull `image_ref` onto machines ahead of a rollout: the machines of an area and operator (a
    `percent` share of them) or the listed `uuids`; by `deadline` (epoch seconds) every machine has
    pulled, had it already or failed."""

    kind: ClassVar[JobKind] = JobKind.PREPULL

    job_id: str
    image: str
    imageversion: str
    image_ref: str
    area: str = ""
    operator: str = ""
    percent: float = Field(default=100.0, ge=0, le=100)
    uuids: list[str] = Field(default_factory=list)
    deadline: float
    issued_at: float
    ratelimit: int = Field(default=0, ge=0, le=MAX_PULL_RATE)  # bytes/s per machine, 0: its own cap only

    @property
    def job_op(self) -> str:
        return "prepull"


class PullRequest(Message):
    """The deployer asks one agent to have `image_ref` (pulling it unless it is there)."""

    image_ref: str
    job_id: str = ""
    # The job's cap in bytes per second; the agent pulls at the lower of it and its own (0: none).
    ratelimit: int = Field(default=0, ge=0, le=MAX_PULL_RATE)


class PullReply(Message):
    """The image is on the machine; `already_present` when no pull was needed."""

    image_ref: str
    already_present: bool
