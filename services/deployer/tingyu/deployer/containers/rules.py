"""The containers slice's decisions. Pure: no I/O, easy to test.

- `apply`: how a container command changes a machine's desired state. Every accepted operation
  bumps the deployment's `revision` and records its job id;
- `commit` and `roll_back`: a change of spec (update, upgrade) is a transaction; the last spec that
  ran stays as `fallback` until its job succeeds, and a failed change goes back to it;
- `applied` and `verdict`: the agent reports the revision and job id it applied, which is how jobs
  complete exactly (and changes commit or roll back).
"""

from __future__ import annotations

from dataclasses import dataclass

from tingyu.common.models.containers import (
    ContainerCommand,
    ContainerOp,
    ContainerReport,
    ContainerSpec,
    DesiredContainer,
    DesiredState,
    FailedAttempt,
    NodeDesired,
    NodeReport,
    PodPhase,
)
from tingyu.common.models.jobs import JobState

GOALS = {
    DesiredState.RUNNING: PodPhase.RUNNING,
    DesiredState.STOPPED: PodPhase.STOPPED,
    DesiredState.ABSENT: PodPhase.DELETED,
}


def not_found(name: str) -> str:
    return f'deployments.apps "{name}" not found'


@dataclass
class Outcome:
    """What applying a command did: the revision and phase that complete its job, or why it failed."""

    revision: int = 0
    goal: PodPhase = PodPhase.RUNNING
    error: str = ""
    superseded: str = ""  # the job this command overtook, if that one was still in flight
    changed: bool = True


def apply(doc: NodeDesired, command: ContainerCommand, now: float) -> Outcome:
    """Apply `command` to `doc` in place. Applying the same command twice changes nothing."""
    entry = doc.containers.get(command.name)
    if entry is not None and entry.job_id == command.job_id:
        return Outcome(entry.revision, GOALS[entry.state], changed=False)
    if command.op == ContainerOp.CREATE:
        return _create(doc, entry, command, now)
    if entry is None or entry.state == DesiredState.ABSENT:
        return Outcome(error=not_found(command.name))
    previous = entry.job_id
    error = _change(entry, command)
    if error:
        return Outcome(error=error)
    entry.revision += 1
    entry.job_id = command.job_id
    return Outcome(entry.revision, GOALS[entry.state], superseded=previous)


def _create(
    doc: NodeDesired, entry: DesiredContainer | None, command: ContainerCommand, now: float
) -> Outcome:
    if entry is not None:
        state = "is being deleted" if entry.state == DesiredState.ABSENT else "already exists"
        return Outcome(error=f'deployments.apps "{command.name}" {state}')
    if command.spec is None:
        return Outcome(error="create without a spec")
    doc.containers[command.name] = DesiredContainer(
        name=command.name, spec=command.spec, job_id=command.job_id, created_at=now
    )
    return Outcome(1, PodPhase.RUNNING)


def _change(entry: DesiredContainer, command: ContainerCommand) -> str:
    """Change an existing deployment; '' when done, else why not."""
    match command.op:
        case ContainerOp.UPDATE if command.spec is not None:
            _respec(entry, command.spec)
        case ContainerOp.UPGRADE if command.patch is not None:
            _respec(entry, entry.spec.model_copy(update=command.patch.model_dump()))
        case ContainerOp.START:
            entry.state = DesiredState.RUNNING
        case ContainerOp.STOP:
            entry.state = DesiredState.STOPPED
        case ContainerOp.RESTART:
            entry.state = DesiredState.RUNNING
            entry.restarts += 1
        case ContainerOp.DELETE:
            entry.state = DesiredState.ABSENT
        case _:
            return f"{command.op.value} is missing its spec or image"
    return ""


# --- changes of spec as transactions ---------------------------------------------------------


def _respec(entry: DesiredContainer, spec: ContainerSpec) -> None:
    """A new spec; the last one that ran stays as the fallback until the change succeeds."""
    if spec == entry.spec:
        return
    if entry.fallback is None:
        entry.fallback = entry.spec
    elif spec == entry.fallback:
        entry.fallback = None  # back to what runs: nothing left to roll back
    entry.spec = spec


def commit(doc: NodeDesired, name: str, job_id: str) -> bool:
    """Job `job_id` of deployment `name` succeeded: its spec is now the one that runs."""
    entry = doc.containers.get(name)
    if entry is None or entry.job_id != job_id or entry.fallback is None:
        return False
    entry.fallback = None
    entry.failed = None
    return True


def roll_back(doc: NodeDesired, name: str, job_id: str, reason: str, now: float) -> bool:
    """Job `job_id` of deployment `name` failed: back to the last spec that ran, the attempt kept.

    A new revision makes the agent converge to it; the job id stays the failed one (already
    final), so the rollback completes no job. Applying it twice changes nothing the second time.
    """
    entry = doc.containers.get(name)
    if entry is None or entry.job_id != job_id or entry.fallback is None:
        return False
    tried = entry.spec
    entry.failed = FailedAttempt(
        job_id=job_id,
        image=tried.image,
        imageversion=tried.imageversion,
        image_ref=tried.image_ref,
        reason=reason,
        at=now,
    )
    entry.spec = entry.fallback
    entry.fallback = None
    entry.revision += 1
    return True


def rollback_note(entry: DesiredContainer | None, job_id: str) -> str:
    """What the failure of job `job_id` adds to its message when the deployment goes back to the
    spec that ran ('' when that job changed no spec, or is no longer the deployment's current one)."""
    if entry is None or entry.job_id != job_id or entry.fallback is None:
        return ""
    return f"; rolled back to {entry.fallback.image}:{entry.fallback.imageversion}"


# --- agents' reports -------------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    """What an applied revision means for its job, and whether the deployment is gone for good."""

    state: JobState
    message: str = ""
    forget: bool = False  # a deleted deployment leaves the desired state and frees its name
    commit: bool = False  # a change of spec ran: the fallback goes (before the job reads succeeded)
    roll_back: str = ""  # a change of spec failed, for this reason: back to the spec that ran


def newer(current: NodeReport | None, report: NodeReport) -> NodeReport | None:
    """The report to store, or None when the stored one is more recent (reports may overtake)."""
    if current is not None and current.reported_at > report.reported_at:
        return None
    return report


def applied(doc: NodeDesired, report: NodeReport) -> list[tuple[DesiredContainer, ContainerReport]]:
    """The desired deployments whose current revision (and job) the agent reports as applied."""
    pairs = []
    for name, entry in doc.containers.items():
        seen = report.containers.get(name)
        if seen is not None and seen.job_id == entry.job_id and seen.revision == entry.revision:
            pairs.append((entry, seen))
    return pairs


def verdict(entry: DesiredContainer, seen: ContainerReport) -> Verdict:
    """The agent applied this revision: its job succeeded, failed, or is still running.

    A change of spec in flight (`fallback` set) commits when it succeeds and rolls back when it fails.
    """
    goal = GOALS[entry.state]
    changing = entry.fallback is not None
    if seen.phase == goal:
        return Verdict(JobState.SUCCEEDED, "success", forget=goal == PodPhase.DELETED, commit=changing)
    if seen.phase == PodPhase.FAILED:
        reason = seen.message or "the container failed"
        note = rollback_note(entry, entry.job_id)
        return Verdict(JobState.FAILED, reason + note, roll_back=reason if changing else "")
    return Verdict(JobState.RUNNING)


def without(doc: NodeDesired | None, entry: DesiredContainer) -> NodeDesired | None:
    """The desired state after a deleted deployment leaves it; None when it is gone or re-created."""
    current = doc.containers.get(entry.name) if doc else None
    if doc is None or current is None or current.job_id != entry.job_id:
        return None
    del doc.containers[entry.name]
    return doc
