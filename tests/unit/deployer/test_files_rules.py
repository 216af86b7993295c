"""The files slice's rules: waiting for an agent that is away, and a job's answer from the agent's."""

from __future__ import annotations

import pytest

from tingyu.common.errors import FileFetchError, InternalError, PayloadTooLarge, TingyuError, error_of
from tingyu.common.models.files import FileFetchCommand, FileFetchReply
from tingyu.common.names import new_job_id
from tingyu.deployer.files.rules import agent_may_return, agent_silent, copy_too_slow, fetched, refused

NODE = "tingyu-" + "2" * 32


def command(issued_at: float = 100.0) -> FileFetchCommand:
    return FileFetchCommand(
        job_id=new_job_id(), name="web", node_uuid=NODE, path="/etc/hosts", issued_at=issued_at
    )


def test_an_absent_agent_is_waited_for_until_the_wait_is_over() -> None:
    issued = command(issued_at=100.0)
    assert agent_may_return(issued, 100.0, 30.0)
    assert agent_may_return(issued, 129.9, 30.0)
    assert not agent_may_return(issued, 130.0, 30.0)
    assert agent_silent(issued, 30.0) == f"machine {NODE} did not answer within 30s"


def test_a_slow_copy_says_how_long_it_was_given() -> None:
    assert copy_too_slow(900.0) == "the copy did not finish within 900s"


@pytest.mark.parametrize(
    ("error", "message", "code"),
    [
        (FileFetchError(detail="no such file: /etc/nope"), "no such file: /etc/nope", "TY0050"),
        (
            PayloadTooLarge(detail="file of 2048 bytes is over 1024"),
            "file of 2048 bytes is over 1024",
            "TY0052",
        ),
        (FileFetchError(), FileFetchError.default_msg, "TY0050"),
        (InternalError(), InternalError.default_msg, "TY0500"),
    ],
)
def test_an_agents_error_fails_the_job_with_its_reason_and_code(
    error: TingyuError, message: str, code: str
) -> None:
    assert refused(error) == (message, {"code": code})


def test_an_error_that_crossed_the_bus_keeps_its_reason_and_code() -> None:
    crossed = error_of("TY0052", PayloadTooLarge.default_msg, "file of 2048 bytes is over 1024")
    assert refused(crossed) == ("file of 2048 bytes is over 1024", {"code": "TY0052"})


def test_a_fetched_file_is_described_with_the_path_asked_for() -> None:
    asked = command()
    reply = FileFetchReply(
        job_id=asked.job_id, ok=True, name="hosts", size=12, sha256="ab" * 32, object=asked.job_id
    )
    assert fetched(asked, reply) == {
        "name": "hosts",
        "size": 12,
        "sha256": "ab" * 32,
        "object": asked.job_id,
        "path": "/etc/hosts",
    }
