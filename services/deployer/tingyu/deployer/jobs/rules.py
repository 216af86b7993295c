"""The jobs slice's decisions: when a job's timer is due, and why an overdue job fails. Pure."""

from __future__ import annotations

from tingyu.common.models.jobs import Job, JobDeadline


def due_in(timer: JobDeadline, now: float) -> float:
    """Seconds until the timer is due; 0 once it is."""
    return max(0.0, timer.deadline - now)


def overdue(job: Job | None) -> str:
    """Why a job whose deadline passed fails; '' when there is nothing left to fail (gone or final)."""
    if job is None or job.state.final:
        return ""
    where = f"machine {job.node_uuid}" if job.node_uuid else "its worker"
    goal = f" did not reach {job.goal}" if job.goal else " did not finish"
    return f"timed out: {where}{goal} in time"
