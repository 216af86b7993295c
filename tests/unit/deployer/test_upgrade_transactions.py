"""Changes of spec as transactions in the pure desired-state rules: commit, roll back, keep what ran."""

from __future__ import annotations

from tests.support.factories import command, name, spec
from tingyu.common.models.containers import (
    ContainerOp,
    ContainerReport,
    DesiredContainer,
    ImagePatch,
    NodeDesired,
    PodPhase,
)
from tingyu.common.models.jobs import JobState
from tingyu.deployer.containers.rules import Verdict, apply, commit, roll_back, rollback_note, verdict


def running(deployment: str) -> NodeDesired:
    doc = NodeDesired(node_uuid="tingyu-" + "0" * 32)
    apply(doc, command(ContainerOp.CREATE, deployment, spec=spec(version="1")), now=1.0)
    return doc


def upgrade(deployment: str, version: str) -> tuple[str, ImagePatch]:
    patch = ImagePatch(image=spec().image, imageversion=version, image_ref=f"{spec().image}:{version}")
    cmd = command(ContainerOp.UPGRADE, deployment, patch=patch)
    return cmd.job_id, patch


def test_a_failed_upgrade_goes_back_to_the_spec_that_ran_and_keeps_the_attempt() -> None:
    deployment = name()
    doc = running(deployment)
    cmd = command(ContainerOp.UPGRADE, deployment, patch=upgrade(deployment, "2")[1])
    revision = apply(doc, cmd, now=2.0).revision
    entry = doc.containers[deployment]
    assert (entry.spec.imageversion, entry.running_spec.imageversion) == ("2", "1")

    assert roll_back(doc, deployment, cmd.job_id, "manifest unknown", now=3.0)
    assert not roll_back(doc, deployment, cmd.job_id, "manifest unknown", now=4.0)  # once only
    assert entry.spec.imageversion == "1"
    assert entry.fallback is None
    assert entry.revision == revision + 1
    assert entry.job_id == cmd.job_id
    assert entry.failed is not None
    assert (entry.failed.imageversion, entry.failed.reason, entry.failed.job_id) == (
        "2",
        "manifest unknown",
        cmd.job_id,
    )


def test_a_succeeded_upgrade_commits_and_a_later_failure_falls_back_to_it() -> None:
    deployment = name()
    doc = running(deployment)
    first = command(ContainerOp.UPGRADE, deployment, patch=upgrade(deployment, "2")[1])
    apply(doc, first, now=2.0)
    assert commit(doc, deployment, first.job_id)
    second = command(ContainerOp.UPGRADE, deployment, patch=upgrade(deployment, "3")[1])
    apply(doc, second, now=3.0)
    assert roll_back(doc, deployment, second.job_id, "exited with code 1", now=4.0)
    assert doc.containers[deployment].spec.imageversion == "2"


def test_an_operation_overtaking_an_upgrade_keeps_the_spec_that_ran_as_fallback() -> None:
    deployment = name()
    doc = running(deployment)
    apply(doc, command(ContainerOp.UPGRADE, deployment, patch=upgrade(deployment, "2")[1]), now=2.0)
    apply(doc, command(ContainerOp.UPGRADE, deployment, patch=upgrade(deployment, "3")[1]), now=3.0)
    restart = command(ContainerOp.RESTART, deployment)
    apply(doc, restart, now=4.0)
    assert not roll_back(doc, deployment, "some-other-job", "x", now=5.0)  # only the current job's failure
    assert roll_back(doc, deployment, restart.job_id, "timed out", now=5.0)
    assert doc.containers[deployment].spec.imageversion == "1"


def test_operations_that_change_no_spec_leave_nothing_to_roll_back() -> None:
    deployment = name()
    doc = running(deployment)
    stop = command(ContainerOp.STOP, deployment)
    apply(doc, stop, now=2.0)
    assert not roll_back(doc, deployment, stop.job_id, "x", now=3.0)
    back = command(ContainerOp.UPGRADE, deployment, patch=upgrade(deployment, "1")[1])
    apply(doc, back, now=4.0)  # the version that runs: no change of spec at all
    assert doc.containers[deployment].fallback is None


def test_a_report_of_a_change_of_spec_commits_it_or_rolls_it_back_with_the_reason() -> None:
    deployment = name()
    doc = running(deployment)
    cmd = command(ContainerOp.UPGRADE, deployment, patch=upgrade(deployment, "2")[1])
    apply(doc, cmd, now=2.0)
    entry = doc.containers[deployment]
    ran = seen(entry, PodPhase.RUNNING)
    failed = seen(entry, PodPhase.FAILED, "cannot pull image x:2: manifest unknown")
    assert verdict(entry, ran) == Verdict(JobState.SUCCEEDED, "success", commit=True)
    assert verdict(entry, failed) == Verdict(
        JobState.FAILED,
        f"cannot pull image x:2: manifest unknown; rolled back to {spec().image}:1",
        roll_back="cannot pull image x:2: manifest unknown",
    )
    assert rollback_note(entry, "another-job") == ""


def seen(entry: DesiredContainer, phase: PodPhase, message: str = "") -> ContainerReport:
    return ContainerReport(
        name=entry.name,
        revision=entry.revision,
        job_id=entry.job_id,
        podname=f"{entry.name}-{entry.revision}",
        phase=phase,
        message=message,
    )
