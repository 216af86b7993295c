"""The containers slice's rules: how commands change desired state, and what agents' reports mean."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.factories import command, name, spec
from tingyu.common.models.containers import (
    ContainerOp,
    ContainerReport,
    DesiredContainer,
    DesiredState,
    ImagePatch,
    NodeDesired,
    NodeReport,
    PodPhase,
)
from tingyu.common.models.jobs import JobState
from tingyu.deployer.containers.rules import Verdict, applied, apply, newer, verdict, without

NODE = "tingyu-" + "0" * 32


def doc_with(deployment: str) -> NodeDesired:
    doc = NodeDesired(node_uuid=NODE)
    assert not apply(doc, command(ContainerOp.CREATE, deployment), 1.0).error
    return doc


def test_create_sets_revision_one_running() -> None:
    n = name()
    doc = doc_with(n)
    entry = doc.containers[n]
    assert (entry.revision, entry.state, entry.created_at) == (1, DesiredState.RUNNING, 1.0)


def test_duplicate_create_is_refused_and_leaves_original() -> None:
    n = name()
    doc = doc_with(n)
    original = doc.containers[n].model_copy()
    outcome = apply(doc, command(ContainerOp.CREATE, n, spec=spec(version="2")), 2.0)
    assert "already exists" in outcome.error
    assert doc.containers[n] == original


def test_same_command_twice_has_one_effect() -> None:
    n = name()
    doc = doc_with(n)
    stop = command(ContainerOp.STOP, n)
    first = apply(doc, stop, 2.0)
    second = apply(doc, stop, 3.0)
    assert (first.revision, first.goal) == (2, PodPhase.STOPPED)
    assert (second.revision, second.changed) == (2, False)


def test_each_operation_bumps_revision_and_supersedes_previous_job() -> None:
    n = name()
    doc = doc_with(n)
    create_job = doc.containers[n].job_id
    restart = apply(doc, command(ContainerOp.RESTART, n), 2.0)
    assert restart.superseded == create_job
    assert doc.containers[n].restarts == 1
    delete = apply(doc, command(ContainerOp.DELETE, n), 3.0)
    assert (delete.revision, delete.goal) == (3, PodPhase.DELETED)
    assert doc.containers[n].state == DesiredState.ABSENT


def test_upgrade_changes_only_the_image() -> None:
    n = name()
    doc = NodeDesired(node_uuid="tingyu-" + "0" * 32)
    apply(doc, command(ContainerOp.CREATE, n, spec=spec(limits_memory=64)), 1.0)
    patch = ImagePatch(image="pcdn", imageversion="v2", image_ref="r:5000/pcdn:v2")
    apply(doc, command(ContainerOp.UPGRADE, n, patch=patch), 2.0)
    got = doc.containers[n].spec
    assert (got.image_ref, got.imageversion, got.limits_memory) == ("r:5000/pcdn:v2", "v2", 64)


def test_operations_on_unknown_or_deleted_names_fail() -> None:
    n = name()
    doc = NodeDesired(node_uuid="tingyu-" + "0" * 32)
    assert "not found" in apply(doc, command(ContainerOp.START, n), 1.0).error
    doc = doc_with(n)
    apply(doc, command(ContainerOp.DELETE, n), 2.0)
    assert "not found" in apply(doc, command(ContainerOp.START, n), 3.0).error
    assert "being deleted" in apply(doc, command(ContainerOp.CREATE, n), 3.0).error


# --- agents' reports ---------------------------------------------------------------------------


def seen(entry: DesiredContainer, phase: PodPhase, **fields: Any) -> ContainerReport:
    return ContainerReport(
        name=entry.name,
        revision=entry.revision,
        job_id=entry.job_id,
        phase=phase,
        podname=entry.name,
        **fields,
    )


def report(*containers: ContainerReport, at: float = 5.0) -> NodeReport:
    return NodeReport(node_uuid=NODE, containers={c.name: c for c in containers}, reported_at=at)


def test_only_the_current_revision_and_job_count_as_applied() -> None:
    n, other, absent = name(), name(), name()
    doc = doc_with(n)
    apply(doc, command(ContainerOp.CREATE, other), 1.0)
    current = doc.containers[n]
    old = seen(doc.containers[other], PodPhase.RUNNING)
    apply(doc, command(ContainerOp.STOP, other), 2.0)  # the agent has not applied the stop yet
    stranger = ContainerReport(name=absent, revision=1, job_id="x", phase=PodPhase.RUNNING, podname=absent)
    pairs = applied(doc, report(seen(current, PodPhase.RUNNING), old, stranger))
    assert [(entry.name, s.name) for entry, s in pairs] == [(n, n)]


@pytest.mark.parametrize(
    ("op", "phase", "state", "message", "forget"),
    [
        (ContainerOp.CREATE, PodPhase.RUNNING, JobState.SUCCEEDED, "success", False),
        (ContainerOp.STOP, PodPhase.STOPPED, JobState.SUCCEEDED, "success", False),
        (ContainerOp.DELETE, PodPhase.DELETED, JobState.SUCCEEDED, "success", True),
        (ContainerOp.STOP, PodPhase.RUNNING, JobState.RUNNING, "", False),
        (ContainerOp.DELETE, PodPhase.STOPPED, JobState.RUNNING, "", False),
        (ContainerOp.START, PodPhase.FAILED, JobState.FAILED, "the container failed", False),
    ],
)
def test_an_applied_revision_decides_its_job(
    op: ContainerOp, phase: PodPhase, state: JobState, message: str, forget: bool
) -> None:
    n = name()
    doc = doc_with(n)
    if op != ContainerOp.CREATE:
        assert not apply(doc, command(op, n), 2.0).error
    entry = doc.containers[n]
    assert verdict(entry, seen(entry, phase)) == Verdict(state, message, forget)


def test_a_failed_container_fails_its_job_with_the_agents_reason() -> None:
    n = name()
    entry = doc_with(n).containers[n]
    outcome = verdict(entry, seen(entry, PodPhase.FAILED, message="image pull failed: not found"))
    assert (outcome.state, outcome.message) == (JobState.FAILED, "image pull failed: not found")


def test_an_older_report_never_replaces_a_newer_one() -> None:
    stored = report(at=10.0)
    assert newer(stored, report(at=9.0)) is None
    assert newer(stored, report(at=11.0)) == report(at=11.0)
    assert newer(None, report(at=1.0)) == report(at=1.0)


def test_a_deleted_deployment_leaves_the_desired_state_unless_it_was_re_created() -> None:
    n = name()
    doc = doc_with(n)
    apply(doc, command(ContainerOp.DELETE, n), 2.0)
    deleted = doc.containers[n].model_copy()
    after = without(doc.model_copy(deep=True), deleted)
    assert after is not None
    assert n not in after.containers
    again = doc_with(n)  # the name was deleted and created again by another job meanwhile
    assert without(again, deleted) is None
    assert without(None, deleted) is None
