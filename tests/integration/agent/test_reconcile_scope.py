"""The reconciler's passes against the real Docker Engine: a pass about one deployment looks at its
container alone (found by name), a whole pass at every one; a create whose image went since it was
last seen goes through the image check again instead of failing with Docker's "No such image"."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import docker
import pytest

from tests.support import unique
from tests.support.factories import spec
from tingyu.agent.docker_runtime import DockerRuntime
from tingyu.agent.reconciler import Reconciler
from tingyu.agent.runtime import LABEL_NODE, LABEL_SPEC, spec_hash
from tingyu.common.models.containers import DesiredContainer, DesiredState, NodeDesired, PodPhase
from tingyu.common.policy import Policy


@pytest.fixture
def node(engine: docker.DockerClient) -> Iterator[str]:
    """A machine of its own on this Docker Engine; its containers go after the test."""
    uuid = unique("tingyu-scope")
    yield uuid
    for container in engine.containers.list(all=True, filters={"label": f"{LABEL_NODE}={uuid}"}):
        with contextlib.suppress(docker.errors.APIError):
            container.remove(force=True)


def reconciler(engine: docker.DockerClient, node: str) -> Reconciler:
    # No registry is allowed: an image the machine lacks is refused before any pull is tried.
    return Reconciler(DockerRuntime(engine, stop_timeout_s=1), node, policy=Policy(registries=frozenset()))


def desired(
    node: str, image_ref: str, *names: str, revision: int = 1, state: DesiredState = DesiredState.RUNNING
) -> NodeDesired:
    image, _, version = image_ref.rpartition(":")
    entries = [
        DesiredContainer(
            name=name,
            spec=spec(image, version),
            revision=revision,
            job_id=unique("job"),
            created_at=0.0,
            state=state,
        )
        for name in names
    ]
    return NodeDesired(node_uuid=node, containers={entry.name: entry for entry in entries})


def status(engine: docker.DockerClient, name: str) -> str:
    return str(engine.api.inspect_container(name)["State"]["Status"])


async def test_a_pass_about_one_deployment_looks_at_its_container_alone(
    engine: docker.DockerClient, node: str, image: str
) -> None:
    first, second = unique("scope"), unique("scope")
    passes = reconciler(engine, node)
    state = desired(node, image, first, second)
    seen = await passes.reconcile(state)
    assert {name: report.phase for name, report in seen.items()} == dict.fromkeys(
        [first, second], PodPhase.RUNNING
    )

    engine.api.stop(second, timeout=1)  # behind the agent's back (a manual stop is not restarted)
    seen = await passes.reconcile(state, only=[first])
    assert list(seen) == [first]
    assert seen[first].phase == PodPhase.RUNNING
    assert status(engine, second) == "exited"  # not looked at

    seen = await passes.reconcile(state)  # a whole pass (Docker's events, the resync) brings it back
    assert seen[second].phase == PodPhase.RUNNING
    assert status(engine, second) == "running"


async def test_a_deployment_gone_from_the_desired_state_is_removed_by_its_own_pass(
    engine: docker.DockerClient, node: str, image: str
) -> None:
    kept, gone = unique("scope"), unique("scope")
    passes = reconciler(engine, node)
    await passes.reconcile(desired(node, image, kept, gone))
    seen = await passes.reconcile(desired(node, image, kept), only=[gone])
    assert seen == {}
    assert [c.name for c in engine.containers.list(all=True, filters={"label": f"{LABEL_NODE}={node}"})] == [
        kept
    ]


async def test_an_image_removed_since_it_was_seen_is_checked_again(
    engine: docker.DockerClient, node: str, image: str
) -> None:
    tagged = f"tyagent/{unique('again')}:1"
    repository, _, tag = tagged.rpartition(":")
    engine.images.get(image).tag(repository, tag)
    passes = reconciler(engine, node)
    first, second = unique("scope"), unique("scope")
    seen = await passes.reconcile(desired(node, tagged, first))
    assert seen[first].phase == PodPhase.RUNNING  # the image is now known to be on the machine

    await passes.reconcile(desired(node, tagged, first, revision=2, state=DesiredState.ABSENT))
    engine.images.remove(tagged)  # untagged; the image itself stays under its other tag
    seen = await passes.reconcile(desired(node, tagged, second), only=[second])
    assert seen[second].phase == PodPhase.FAILED
    assert "refused by the edge policy" in seen[second].message, seen[second].message
    assert tagged in seen[second].message

    engine.images.get(image).tag(repository, tag)  # back on the machine: the next pass creates it
    seen = await passes.reconcile(desired(node, tagged, second), only=[second])
    assert seen[second].phase == PodPhase.RUNNING
    engine.images.remove(tagged, force=True)


async def test_a_container_made_behind_the_agents_back_under_a_new_name_is_taken_over(
    engine: docker.DockerClient, node: str, image: str
) -> None:
    """After a listing, a new deployment's container is created without a look first; one that is
    there after all (ours by its labels) is acted on, one of another machine fails the deployment."""
    passes = reconciler(engine, node)
    await passes.reconcile(desired(node, image))  # the listing: nothing on this machine yet
    ours, theirs = unique("scope"), unique("scope")
    state = desired(node, image, ours, theirs)
    labels = {LABEL_NODE: node, LABEL_SPEC: spec_hash(state.containers[ours].spec)}
    made = engine.api.create_container(image, name=ours, labels=labels)["Id"]
    engine.api.create_container(image, name=theirs, labels={LABEL_NODE: unique("tingyu-other")})
    try:
        seen = await passes.reconcile(state, only=[ours, theirs])
        assert (seen[ours].phase, seen[ours].container_id) == (PodPhase.RUNNING, made)
        assert seen[theirs].phase == PodPhase.FAILED
        assert "already in use" in seen[theirs].message, seen[theirs].message
    finally:
        engine.api.remove_container(theirs, force=True)
