"""How commands change desired state (pure logic of the deployer)."""

from __future__ import annotations

from tests.factories import command, name, spec
from tingyu.common.models.containers import ContainerOp, DesiredState, ImagePatch, NodeDesired, PodPhase
from tingyu.deployer.desired import apply


def doc_with(deployment: str) -> NodeDesired:
    doc = NodeDesired(node_uuid="tingyu-" + "0" * 32)
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
