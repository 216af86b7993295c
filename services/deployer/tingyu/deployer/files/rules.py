"""The files slice's decisions: how long to wait for an agent, and what a job's answer says. Pure."""

from __future__ import annotations

from typing import Any

from tingyu.common.errors import TingyuError
from tingyu.common.models.files import FileFetchCommand, FileFetchReply


def agent_may_return(command: FileFetchCommand, now: float, agent_wait_s: float) -> bool:
    """True while an agent that is away (no responder) is still waited for."""
    return now < command.issued_at + agent_wait_s


def agent_silent(command: FileFetchCommand, agent_wait_s: float) -> str:
    return f"machine {command.node_uuid} did not answer within {agent_wait_s:.0f}s"


def copy_too_slow(copy_timeout_s: float) -> str:
    return f"the copy did not finish within {copy_timeout_s:.0f}s"


def refused(exc: TingyuError) -> tuple[str, dict[str, Any]]:
    """The failed job's message and result from the agent's error: its English reason, and its code."""
    return exc.detail or exc.msg, {"code": exc.code}


def fetched(command: FileFetchCommand, reply: FileFetchReply) -> dict[str, Any]:
    """The succeeded job's result: where the copy is stored, and what it is."""
    return {
        "name": reply.name,
        "size": reply.size,
        "sha256": reply.sha256,
        "object": reply.object,
        "path": command.path,
    }
