"""The jobs slice's rules: when a job's timer is due, and why an overdue job fails."""

from __future__ import annotations

from typing import Any

import pytest

from tingyu.common.models.jobs import Job, JobDeadline, JobKind, JobState
from tingyu.common.names import new_job_id
from tingyu.deployer.jobs.rules import due_in, next_look, nudge_due, overdue, unanswered


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


def test_an_unanswered_job_is_looked_at_again_at_doubling_intervals_until_its_deadline() -> None:
    timer = JobDeadline(job_id=new_job_id(), deadline=1000.0 + 100, dispatched_at=1000.0)
    looks, now = [], 1000.0
    while due_in(timer, now) > 0:
        now += next_look(timer, now, nudge_again_s=10)
        looks.append(round(now - 1000.0, 6))
    assert looks == [10, 20, 40, 80, 100]  # then the deadline
    assert not nudge_due(timer, 1009.9, 10)
    assert nudge_due(timer, 1010.0, 10)


def test_timers_without_a_dispatch_time_or_with_nudging_off_wait_for_their_deadline() -> None:
    old = JobDeadline(job_id=new_job_id(), deadline=100.0)
    assert next_look(old, 40.0, nudge_again_s=10) == 60.0
    assert not nudge_due(old, 90.0, 10)
    off = JobDeadline(job_id=new_job_id(), deadline=100.0, dispatched_at=1.0)
    assert next_look(off, 40.0, nudge_again_s=0) == 60.0
    assert not nudge_due(off, 90.0, 0)


def test_only_a_job_still_dispatched_is_unanswered() -> None:
    assert unanswered(job(JobState.DISPATCHED))
    for state in (JobState.RUNNING, JobState.SUCCEEDED, JobState.FAILED, JobState.QUEUED):
        assert not unanswered(job(state))
    assert not unanswered(None)
