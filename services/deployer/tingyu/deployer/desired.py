"""How a container command changes a machine's desired state. Pure: no I/O, easy to test.

Every accepted operation bumps the deployment's `revision` and records its job id; the
agent reports the revision and job id it applied, which is how jobs complete exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

from tingyu.common.models.containers import (
    ContainerCommand,
    ContainerOp,
    ContainerSpec,
    DesiredContainer,
    DesiredState,
    FailedAttempt,
    NodeDesired,
    PodPhase,
)

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


def rollback_note(entry: DesiredContainer) -> str:
    """What a failed job's message adds when its deployment goes back to the spec that ran."""
    if entry.fallback is None:
        return ""
    return f"; rolled back to {entry.fallback.image}:{entry.fallback.imageversion}"
