"""How a container command changes a machine's desired state. Pure: no I/O, easy to test.

Every accepted operation bumps the deployment's `revision` and records its job id; the
agent reports the revision and job id it applied, which is how jobs complete exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

from tingyu.common.models.containers import (
    ContainerCommand,
    ContainerOp,
    DesiredContainer,
    DesiredState,
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
    name = command.name
    entry = doc.containers.get(name)
    if entry is not None and entry.job_id == command.job_id:
        return Outcome(entry.revision, GOALS[entry.state], changed=False)
    if command.op == ContainerOp.CREATE:
        if entry is not None:
            state = "is being deleted" if entry.state == DesiredState.ABSENT else "already exists"
            return Outcome(error=f'deployments.apps "{name}" {state}')
        if command.spec is None:
            return Outcome(error="create without a spec")
        doc.containers[name] = DesiredContainer(
            name=name, spec=command.spec, job_id=command.job_id, created_at=now
        )
        return Outcome(1, PodPhase.RUNNING)
    if entry is None or entry.state == DesiredState.ABSENT:
        return Outcome(error=not_found(name))
    previous = entry.job_id
    match command.op:
        case ContainerOp.UPDATE:
            if command.spec is None:
                return Outcome(error="update without a spec")
            entry.spec = command.spec
        case ContainerOp.UPGRADE:
            if command.patch is None:
                return Outcome(error="upgrade without an image")
            entry.spec = entry.spec.model_copy(update=command.patch.model_dump())
        case ContainerOp.START:
            entry.state = DesiredState.RUNNING
        case ContainerOp.STOP:
            entry.state = DesiredState.STOPPED
        case ContainerOp.RESTART:
            entry.state = DesiredState.RUNNING
            entry.restarts += 1
        case ContainerOp.DELETE:
            entry.state = DesiredState.ABSENT
    entry.revision += 1
    entry.job_id = command.job_id
    return Outcome(entry.revision, GOALS[entry.state], superseded=previous)
