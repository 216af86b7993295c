"""The jobs slice's decisions: when a job's timer is due, and why an overdue job fails. Pure."""

from __future__ import annotations

from tingyu.common.models.jobs import Job, JobDeadline, JobState


def due_in(timer: JobDeadline, now: float) -> float:
    """Seconds until the timer is due; 0 once it is."""
    return max(0.0, timer.deadline - now)


def next_look(timer: JobDeadline, now: float, nudge_again_s: float) -> float:
    """Seconds until the timer is looked at again: at its deadline, or before it at the next of
    `dispatched_at + nudge_again_s · 2^k` (k = 0, 1, …), when an unanswered nudge is sent again."""
    wait = due_in(timer, now)
    if not timer.dispatched_at or nudge_again_s <= 0:
        return wait
    elapsed = now - timer.dispatched_at
    step = nudge_again_s
    while step <= elapsed:
        step *= 2
    return min(wait, step - elapsed)


def nudge_due(timer: JobDeadline, now: float, nudge_again_s: float) -> bool:
    """The first interval after the nudge has passed (never for timers older than `dispatched_at`)."""
    return bool(timer.dispatched_at) and nudge_again_s > 0 and now - timer.dispatched_at >= nudge_again_s


def unanswered(job: Job | None) -> bool:
    """No report has moved the job on from dispatched: the agent may never have heard of it."""
    return job is not None and job.state == JobState.DISPATCHED


def overdue(job: Job | None) -> str:
    """Why a job whose deadline passed fails; '' when there is nothing left to fail (gone or final)."""
    if job is None or job.state.final:
        return ""
    where = f"machine {job.node_uuid}" if job.node_uuid else "its worker"
    goal = f" did not reach {job.goal}" if job.goal else " did not finish"
    return f"timed out: {where}{goal} in time"
