"""Spec hashes, pod names and how a container's state becomes a phase."""

from __future__ import annotations

from tingyu.agent.docker_runtime import _parse_time
from tingyu.agent.reconciler import observe
from tingyu.agent.runtime import LABEL_SPEC, RuntimeContainer, podname, spec_hash
from tingyu.common.models.containers import (
    ContainerSpec,
    DesiredContainer,
    DesiredState,
    EnvVar,
    PodPhase,
)


def make_spec(**changes: object) -> ContainerSpec:
    values: dict[str, object] = {"image": "pcdn", "imageversion": "v1", "image_ref": "127.0.0.1:5000/pcdn:v1"}
    values.update(changes)
    return ContainerSpec.model_validate(values)


def make_desired(state: DesiredState = DesiredState.RUNNING, **spec: object) -> DesiredContainer:
    return DesiredContainer(
        name="web1", spec=make_spec(**spec), state=state, revision=7, job_id="j1", created_at=0
    )


def make_container(status: str, exit_code: int = 0) -> RuntimeContainer:
    return RuntimeContainer(id="0123456789abcdef", name="web1", status=status, exit_code=exit_code)


def test_spec_hash_is_stable_and_sensitive() -> None:
    base = spec_hash(make_spec(env=[EnvVar(key="A", value="1")]))
    assert base == spec_hash(make_spec(env=[EnvVar(key="A", value="1")]))
    assert len(base) == 16
    assert base != spec_hash(make_spec(env=[EnvVar(key="A", value="2")]))
    assert spec_hash(make_spec()) != spec_hash(make_spec(limits_cpu=0.5))
    # Spelling a default out does not change the hash (adding defaulted fields must not recreate).
    assert spec_hash(make_spec()) == spec_hash(make_spec(limits_cpu=0.0, env=[]))


def test_podname() -> None:
    assert podname("web1", "abcdef0123456789", "0123456789") == "web1-abcdef0123-01234"
    assert podname("web1", "abcdef0123456789") == "web1-abcdef0123"


def test_phases() -> None:
    running = make_desired()
    assert observe(running, make_container("running")).phase == PodPhase.RUNNING
    crashed = observe(running, make_container("exited", 3))
    assert (crashed.phase, crashed.message) == (PodPhase.FAILED, "exited with code 3")
    assert observe(running, None).phase == PodPhase.PENDING
    failed = observe(running, None, "cannot pull image x")
    assert (failed.phase, failed.message, failed.revision, failed.job_id) == (
        PodPhase.FAILED,
        "cannot pull image x",
        7,
        "j1",
    )
    assert observe(make_desired(DesiredState.STOPPED), make_container("exited")).phase == PodPhase.STOPPED
    assert observe(make_desired(DesiredState.ABSENT), None).phase == PodPhase.DELETED


def test_observed_podname_uses_the_containers_spec() -> None:
    container = RuntimeContainer(
        id="fedcba9876", name="web1", status="running", labels={LABEL_SPEC: "1" * 16}
    )
    assert observe(make_desired(), container).podname == "web1-1111111111-fedcb"


def test_docker_times() -> None:
    assert _parse_time("0001-01-01T00:00:00Z") is None
    assert _parse_time("2021-07-13T07:44:01.123456789Z") == 1626162241.123456
    assert _parse_time("") is None
