"""The jobs slice's rules: when a job's timer is due, and why an overdue job fails."""

from __future__ import annotations

from typing import Any

import pytest

from tingyu.common.models.jobs import Job, JobDeadline, JobKind, JobState
from tingyu.common.names import new_job_id
from tingyu.deployer.jobs.rules import due_in, overdue


def job(state: JobState = JobState.DISPATCHED, **fields: Any) -> Job:
    return Job(
        job_id=new_job_id(),
        kind=JobKind.CONTAINER,
        op="create",
        state=state,
        created_at=0,
        updated_at=0,
        **fields,
    )


def test_a_timer_comes_back_when_due_and_not_before() -> None:
    timer = JobDeadline(job_id=new_job_id(), deadline=100.0)
    assert due_in(timer, 40.0) == 60.0
    assert due_in(timer, 100.0) == 0.0
    assert due_in(timer, 130.0) == 0.0


def test_an_overdue_container_job_names_its_machine_and_goal() -> None:
    late = job(node_uuid="tingyu-" + "1" * 32, goal="running")
    assert overdue(late) == f"timed out: machine {late.node_uuid} did not reach running in time"


def test_an_overdue_job_without_machine_or_goal_names_its_worker() -> None:
    assert overdue(job(JobState.RUNNING)) == "timed out: its worker did not finish in time"


@pytest.mark.parametrize("state", [JobState.SUCCEEDED, JobState.FAILED])
def test_a_finished_or_missing_job_is_left_alone(state: JobState) -> None:
    assert overdue(job(state, node_uuid="tingyu-" + "1" * 32, goal="running")) == ""
    assert overdue(None) == ""


@pytest.mark.parametrize("state", [JobState.QUEUED, JobState.DISPATCHED, JobState.RUNNING])
def test_every_open_job_fails_at_its_deadline(state: JobState) -> None:
    assert overdue(job(state)).startswith("timed out: ")
