"""What a deployer replica remembers of the jobs it dispatched, to judge reports without a read."""

from __future__ import annotations

from tests.support.factories import spec
from tingyu.common.models.containers import ContainerReport, DesiredContainer, EnvVar, PodPhase
from tingyu.common.names import new_job_id
from tingyu.deployer.containers import Dispatched


def entry(revision: int = 1) -> DesiredContainer:
    big = spec(env=[EnvVar(key="BLOB", value="a" * 60_000)])
    return DesiredContainer(
        name="web",
        spec=big,
        fallback=spec(version="0"),
        revision=revision,
        job_id=new_job_id(),
        created_at=0.0,
    )


def seen(of: DesiredContainer, revision: int) -> ContainerReport:
    return ContainerReport(
        name=of.name, revision=revision, job_id=of.job_id, phase=PodPhase.RUNNING, podname="p"
    )


def test_a_report_of_the_revision_written_finds_it_without_its_env() -> None:
    dispatched = Dispatched()
    written = entry(revision=3)
    dispatched.remember(written)
    found = dispatched.get(seen(written, 3))
    assert found is not None
    assert (found.revision, found.spec.env, found.spec.image_ref) == (3, [], written.spec.image_ref)
    assert found.fallback is not None
    assert found.fallback.imageversion == "0"  # what a failure's rollback note names
    assert dispatched.get(seen(written, 2)) is None  # another revision: read it back instead
    dispatched.forget(written.job_id)
    assert dispatched.get(seen(written, 3)) is None


def test_only_the_most_recent_are_kept() -> None:
    dispatched = Dispatched(limit=2)
    first, second, third = entry(), entry(), entry()
    for each in (first, second, third):
        dispatched.remember(each)
    assert dispatched.get(seen(first, 1)) is None
    assert dispatched.get(seen(third, 1)) is not None
