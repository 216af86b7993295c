"""The one job transition rule: final jobs never change, states never go back."""

from __future__ import annotations

import pytest

from tingyu.common.jobs import advance, new_job
from tingyu.common.models.containers import ContainerCommand, ContainerOp
from tingyu.common.models.jobs import Job, JobKind, JobState


def job(state: JobState = JobState.QUEUED) -> Job:
    return Job(job_id="j1", kind=JobKind.CONTAINER, op="create", state=state, created_at=1.0, updated_at=1.0)


@pytest.mark.parametrize("final", [JobState.SUCCEEDED, JobState.FAILED])
@pytest.mark.parametrize("to", list(JobState))
def test_a_final_job_never_changes(final: JobState, to: JobState) -> None:
    assert advance(job(final), to, now=2.0, message="late") is None


@pytest.mark.parametrize(
    ("start", "to"),
    [
        (JobState.DISPATCHED, JobState.QUEUED),
        (JobState.RUNNING, JobState.DISPATCHED),
        (JobState.RUNNING, JobState.QUEUED),
    ],
)
def test_a_job_never_goes_back(start: JobState, to: JobState) -> None:
    assert advance(job(start), to, now=2.0) is None


def test_forward_moves_keep_the_record_and_stamp_the_time() -> None:
    moved = advance(
        job(JobState.DISPATCHED), JobState.FAILED, now=5.0, message="timed out", result={"code": "x"}
    )
    assert moved is not None
    assert (moved.state, moved.message, moved.updated_at, moved.result) == (
        JobState.FAILED,
        "timed out",
        5.0,
        {"code": "x"},
    )
    assert moved.created_at == 1.0


def test_the_same_state_may_update_progress_but_keeps_the_message_when_none_is_given() -> None:
    running = job(JobState.RUNNING).model_copy(update={"message": "pulling"})
    moved = advance(running, JobState.RUNNING, now=3.0, result={"done": 1})
    assert moved is not None
    assert (moved.message, moved.result) == ("pulling", {"done": 1})


def test_a_missing_job_is_never_created_by_a_move() -> None:
    assert advance(None, JobState.SUCCEEDED, now=1.0) is None


def test_a_command_knows_its_job() -> None:
    command = ContainerCommand(job_id="j9", op=ContainerOp.STOP, name="web", node_uuid="n1", issued_at=1.0)
    record = new_job(command, now=7.0)
    assert (record.kind, record.op, record.deploymentname, record.node_uuid, record.state) == (
        JobKind.CONTAINER,
        "stop",
        "web",
        "n1",
        JobState.QUEUED,
    )
