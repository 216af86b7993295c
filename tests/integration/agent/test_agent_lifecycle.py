"""The agent against real NATS and the real Docker Engine: the test plays the deployer.

It writes `NodeDesired` into the `ty_desired` bucket, nudges the agent, and checks Docker's
own view of the container and the reports the agent publishes on `TY_OBSERVED`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import pytest
import pytest_asyncio
from nats.aio.msg import Msg
from nats.js import errors as js_errors

from tests.integration.conftest import nats_only
from tests.support import build_busybox, enroll_offline, eventually, unique
from tingyu.agent import main as agent_main
from tingyu.agent.config import AgentSettings
from tingyu.agent.heartbeat import STARTUP_FACT_BEATS
from tingyu.agent.identity import load_or_create
from tingyu.agent.runtime import LABEL_NODE
from tingyu.common import subjects, timefmt
from tingyu.common.bus import Bus, responders
from tingyu.common.desired import DesiredStore
from tingyu.common.errors import FileFetchError, PayloadTooLarge
from tingyu.common.models.containers import (
    ContainerReport,
    ContainerSpec,
    DesiredContainer,
    DesiredState,
    EnvVar,
    NodeReport,
    PodPhase,
    Volume,
)
from tingyu.common.models.files import FileFetchCommand, FileFetchReply
from tingyu.common.models.nodes import Heartbeat
from tingyu.common.policy import get_policy_settings
from tingyu.common.service import Service
from tingyu.common.settings import PlatformSettings

FAST = {"heartbeat_s": 0.5, "resync_s": 2.0, "stop_timeout_s": 1.0, "pull_timeout_s": 20.0}


@pytest_asyncio.fixture(scope="module")
async def test_bus(nats_url: str) -> AsyncIterator[Bus]:
    """The deployer's side of the bus (it declares the topology, as the central services do)."""
    bus = await Bus.connect(PlatformSettings(nats_url=nats_url), "agent-tests")
    yield bus
    await bus.close()


@dataclass
class RunningAgent:
    uuid: str
    settings: AgentSettings
    stop: asyncio.Event
    task: asyncio.Task[None]


async def run_agent(stop: asyncio.Event, settings: AgentSettings) -> None:
    """The agent's service in this process until `stop` is set, as `tingyu-agent` runs it."""
    service = Service("agent", job_logs=False)
    service.stop = stop
    async with service.stack:
        await agent_main.setup(service, settings)
        await service.run()


def agent_settings(nats_url: str, state_dir: Path) -> AgentSettings:
    platform = PlatformSettings(nats_url=nats_url, state_dir=state_dir)
    return AgentSettings(platform=platform, area="南京", operator="联通", **FAST)  # type: ignore[arg-type]


@pytest_asyncio.fixture
async def agent(
    request: pytest.FixtureRequest, nats_url: str, tmp_path: Path, engine: docker.DockerClient, test_bus: Bus
) -> AsyncIterator[RunningAgent]:
    """One agent running in this process with its own state folder; its containers go with it.

    Parametrise it indirectly with a dict to override settings.
    """
    settings = agent_settings(nats_url, tmp_path).model_copy(update=getattr(request, "param", {}))
    uuid = enroll_offline(settings.state_dir)
    stop = asyncio.Event()
    task = asyncio.create_task(run_agent(stop, settings))
    yield RunningAgent(uuid, settings, stop, task)
    stop.set()
    await asyncio.wait_for(task, 30)
    remove_node_containers(engine, uuid)


def remove_node_containers(engine: docker.DockerClient, uuid: str) -> None:
    for container in engine.containers.list(all=True, filters={"label": f"{LABEL_NODE}={uuid}"}):
        container.remove(force=True)


# --- playing the deployer --------------------------------------------------------------------------


def make_spec(image_ref: str, **changes: object) -> ContainerSpec:
    image, _, version = image_ref.rpartition(":")
    values: dict[str, object] = {"image": image, "imageversion": version, "image_ref": image_ref}
    values.update(changes)
    return ContainerSpec.model_validate(values)


def make_desired(name: str, spec: ContainerSpec, **changes: object) -> DesiredContainer:
    values: dict[str, object] = {"name": name, "spec": spec, "job_id": unique("job"), "created_at": 0.0}
    values.update(changes)
    return DesiredContainer.model_validate(values)


async def put_desired(bus: Bus, uuid: str, *containers: DesiredContainer, nudge: bool = True) -> None:
    """The machine's desired state becomes exactly `containers` (one key each; other keys purged)."""
    store = DesiredStore(bus)
    for gone in set((await store.node(uuid)).containers) - {c.name for c in containers}:
        await store.remove(uuid, gone)
    for container in containers:
        await store.put(uuid, container)
    if nudge:
        await bus.nc.publish(subjects.agent_nudge(uuid), b"")


async def last_report(bus: Bus, uuid: str) -> NodeReport | None:
    try:
        msg = await bus.js.get_last_msg(subjects.REPORTS.name, subjects.report(uuid))
    except js_errors.NotFoundError:
        return None
    return NodeReport.from_bytes(msg.data or b"")


async def reported(bus: Bus, uuid: str, name: str, revision: int, phase: PodPhase) -> ContainerReport:
    """Wait until the agent's latest report says `name` reached `phase` at `revision`."""

    async def check() -> ContainerReport | None:
        report = await last_report(bus, uuid)
        entry = report.containers.get(name) if report else None
        return entry if entry and entry.revision >= revision and entry.phase == phase else None

    return await eventually(check, timeout=30)


def inspect(engine: docker.DockerClient, name: str) -> dict[str, Any] | None:
    try:
        attrs: dict[str, Any] = engine.api.inspect_container(name)
    except docker.errors.NotFound:
        return None
    return attrs


def running(engine: docker.DockerClient, name: str) -> bool:
    attrs = inspect(engine, name)
    assert attrs is not None, f"{name} is gone"
    return bool(attrs["State"]["Running"])


# --- tests -------------------------------------------------------------------------------------------


async def test_heartbeat_carries_facts(agent: RunningAgent, test_bus: Bus) -> None:
    beats: asyncio.Queue[Heartbeat] = asyncio.Queue()

    async def on_beat(msg: object) -> None:
        await beats.put(Heartbeat.from_bytes(msg.data))  # type: ignore[attr-defined]

    sub = await test_bus.nc.subscribe(subjects.heartbeat_partitions(agent.uuid), cb=on_beat)
    try:
        # The first beats carry the facts (a registry started later learns the machine at once);
        # after them, unchanged facts stop travelling on every beat.
        seen = [await asyncio.wait_for(beats.get(), 10) for _ in range(STARTUP_FACT_BEATS + 2)]
    finally:
        await sub.unsubscribe()
    with_facts = seen[0]
    assert with_facts.facts is not None
    assert with_facts.facts.uuid == agent.uuid
    assert (with_facts.facts.area, with_facts.facts.operator) == ("南京", "联通")
    assert with_facts.facts.cpu == os.cpu_count()
    assert with_facts.facts_digest == with_facts.facts.digest()
    assert any(beat.facts is None for beat in seen[STARTUP_FACT_BEATS - 1 :])


async def test_lifecycle(
    agent: RunningAgent, test_bus: Bus, engine: docker.DockerClient, image: str, tmp_path: Path
) -> None:
    name = unique("ag")
    data = tmp_path / "data"
    data.mkdir()
    spec = make_spec(
        image,
        env=[EnvVar(key="ROLE", value="edge")],
        volumes=[Volume(hostPath=str(data), mountPath="/srv")],
        limits_cpu=0.5,
        requests_cpu=0.25,
        limits_memory=64,
        requests_memory=32,
    )
    desired = make_desired(name, spec, revision=1)
    await put_desired(test_bus, agent.uuid, desired)

    created = await reported(test_bus, agent.uuid, name, 1, PodPhase.RUNNING)
    attrs = inspect(engine, name)
    assert attrs is not None
    assert_configured(attrs, data, agent.uuid)
    first_id = str(attrs["Id"])
    assert created.container_id == first_id
    assert created.podname.startswith(f"{name}-")
    assert created.podname.endswith(first_id[:5])
    assert created.job_id == desired.job_id

    # stop: the container stays, stopped, and the reconciler keeps it so
    desired = desired.model_copy(update={"state": DesiredState.STOPPED, "revision": 2})
    await put_desired(test_bus, agent.uuid, desired)
    await reported(test_bus, agent.uuid, name, 2, PodPhase.STOPPED)
    assert not running(engine, name)

    # start again
    desired = desired.model_copy(update={"state": DesiredState.RUNNING, "revision": 3})
    await put_desired(test_bus, agent.uuid, desired)
    started = await reported(test_bus, agent.uuid, name, 3, PodPhase.RUNNING)
    assert started.container_id == first_id

    # restart: same container, started anew
    desired = desired.model_copy(update={"restarts": 1, "revision": 4})
    await put_desired(test_bus, agent.uuid, desired)
    restarted = await reported(test_bus, agent.uuid, name, 4, PodPhase.RUNNING)
    assert restarted.container_id == first_id
    assert (restarted.started_at or 0) > (started.started_at or 0) > 0
    # the same doc again (plus a companion, whose report proves the pass ran) restarts nothing
    companion = make_desired(unique("ag"), make_spec(image))
    await put_desired(test_bus, agent.uuid, desired, companion)
    await reported(test_bus, agent.uuid, companion.name, 1, PodPhase.RUNNING)
    again = await reported(test_bus, agent.uuid, name, 4, PodPhase.RUNNING)
    assert again.started_at == restarted.started_at

    # update: a new spec means a new container
    desired = desired.model_copy(
        update={"spec": make_spec(image, env=[EnvVar(key="ROLE", value="cache")]), "revision": 5}
    )
    await put_desired(test_bus, agent.uuid, desired, companion)
    updated = await reported(test_bus, agent.uuid, name, 5, PodPhase.RUNNING)
    assert updated.container_id != first_id
    attrs = inspect(engine, name)
    assert attrs is not None
    assert "ROLE=cache" in attrs["Config"]["Env"]
    assert attrs["HostConfig"]["NanoCpus"] in (0, None)

    # delete
    desired = desired.model_copy(update={"state": DesiredState.ABSENT, "revision": 6})
    await put_desired(test_bus, agent.uuid, desired, companion)
    await reported(test_bus, agent.uuid, name, 6, PodPhase.DELETED)
    assert inspect(engine, name) is None
    # gone from the desired doc: the companion is removed too, and no longer reported
    await put_desired(test_bus, agent.uuid)

    async def forgotten() -> bool:
        report = await last_report(test_bus, agent.uuid)
        return report is not None and not report.containers and inspect(engine, companion.name) is None

    await eventually(forgotten, timeout=30)


@pytest.fixture
def registry_port_9_allowed(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The edge policy allows the registry 127.0.0.1:9 (nothing listens there) for the agent started
    after this fixture, so that its pulls reach the runtime and fail there, not at the policy."""
    allowed = f"{os.environ['TINGYU_POLICY_REGISTRIES']},127.0.0.1:9"
    monkeypatch.setenv("TINGYU_POLICY_REGISTRIES", allowed)
    get_policy_settings.cache_clear()
    yield
    monkeypatch.undo()
    get_policy_settings.cache_clear()


async def test_bad_image_fails_with_its_name(
    registry_port_9_allowed: None, agent: RunningAgent, test_bus: Bus, image: str
) -> None:
    name = unique("ag")
    unreachable = f"127.0.0.1:9/{unique('nope')}/none:1"
    await put_desired(test_bus, agent.uuid, make_desired(name, make_spec(unreachable), revision=2))
    # A registry that does not answer may come back: the deployment waits (Pending, with the reason).
    waiting = await reported(test_bus, agent.uuid, name, 2, PodPhase.PENDING)
    assert unreachable in waiting.message
    missing = f"127.0.0.1:9/{unique('NOPE')}/none:1"
    await put_desired(test_bus, agent.uuid, make_desired(name, make_spec(missing), revision=3))
    # A reference that can never be pulled (no registry needed to know): Failed at once, named.
    failed = await reported(test_bus, agent.uuid, name, 3, PodPhase.FAILED)
    assert missing in failed.message
    # fixed by the next revision: the same deployment converges
    await put_desired(test_bus, agent.uuid, make_desired(name, make_spec(image), revision=4))
    await reported(test_bus, agent.uuid, name, 4, PodPhase.RUNNING)


async def test_a_new_version_that_dies_right_after_its_start_is_reported_failed_first(
    agent: RunningAgent, test_bus: Bus, engine: docker.DockerClient
) -> None:
    # It lives long enough to be seen running once started, and dies within the settle time.
    crashing = build_busybox(engine, f"tyagent/{unique('crash')}", "1", cmd="sleep 0.3; exit 3")
    name = unique("ag")
    first: asyncio.Queue[ContainerReport] = asyncio.Queue()

    async def on_report(msg: Msg) -> None:
        seen = NodeReport.from_bytes(msg.data).containers.get(name)
        if seen is not None and seen.phase != PodPhase.PENDING:
            first.put_nowait(seen)

    sub = await test_bus.nc.subscribe(subjects.report(agent.uuid), cb=on_report)
    try:
        # A change of spec in flight (it has a spec to fall back to): only then does the agent wait.
        changing = make_desired(name, make_spec(crashing)).model_copy(
            update={"fallback": make_spec(crashing)}
        )
        await put_desired(test_bus, agent.uuid, changing)
        seen = await asyncio.wait_for(first.get(), 30)
    finally:
        await sub.unsubscribe()
    # Never a moment of Running: that would complete a change of spec that should roll back.
    assert (seen.phase, seen.message) == (PodPhase.FAILED, "exited with code 3 right after it started")


async def test_bad_bind_fails_with_dockers_text(agent: RunningAgent, test_bus: Bus, image: str) -> None:
    name = unique("ag")
    spec = make_spec(image, volumes=[Volume(hostPath="relative/path", mountPath="/srv")])
    await put_desired(test_bus, agent.uuid, make_desired(name, spec))
    failed = await reported(test_bus, agent.uuid, name, 1, PodPhase.FAILED)
    assert "relative/path" in failed.message


async def test_file_requests_are_answered_with_the_reply_envelope(
    agent: RunningAgent, test_bus: Bus, image: str
) -> None:
    """The deployer's file request: the copy lands in `ty_files`, a repeated request for the same
    job gets the same answer, and a refusal is the error class its TY code names, with the reason."""
    name = unique("ag")
    await put_desired(test_bus, agent.uuid, make_desired(name, make_spec(image)))
    await reported(test_bus, agent.uuid, name, 1, PodPhase.RUNNING)
    subject = subjects.agent_request(agent.uuid, "file")

    def ask(path: str, container: str = name, max_bytes: int = 0) -> FileFetchCommand:
        return FileFetchCommand(
            job_id=unique("job"),
            name=container,
            node_uuid=agent.uuid,
            path=path,
            max_bytes=max_bytes,
            issued_at=timefmt.now(),
        )

    command = ask("/data/hello.txt")
    first, second = await asyncio.gather(
        *(responders.call(test_bus, subject, command, FileFetchReply, timeout=30) for _ in range(2))
    )
    content = b"hello from tingyu\n"
    assert first == second
    assert (first.ok, first.name, first.size) == (True, "hello.txt", len(content))
    assert first.sha256 == hashlib.sha256(content).hexdigest()
    stored = await (await test_bus.objects(subjects.FILES)).get(first.object)
    assert stored.data == content

    with pytest.raises(PayloadTooLarge) as too_large:
        await responders.call(test_bus, subject, ask("/data/hello.txt", max_bytes=4), FileFetchReply, 30)
    assert too_large.value.detail == f"/data/hello.txt is {len(content)} bytes, over the limit of 4 bytes"
    with pytest.raises(FileFetchError) as no_file:
        await responders.call(test_bus, subject, ask("/data/nope.txt"), FileFetchReply, 30)
    assert no_file.value.detail == "/data/nope.txt: no such file or directory in the container"
    with pytest.raises(FileFetchError) as no_container:
        await responders.call(test_bus, subject, ask("/data/hello.txt", "absent"), FileFetchReply, 30)
    assert no_container.value.detail == f"container absent does not exist on machine {agent.uuid}"


async def test_strays_go_and_strangers_stay(
    agent: RunningAgent, test_bus: Bus, engine: docker.DockerClient, image: str
) -> None:
    stray = engine.containers.create(image, name=unique("stray"), labels={LABEL_NODE: agent.uuid})
    stranger = engine.containers.create(
        image, name=unique("other"), labels={LABEL_NODE: "tingyu-" + "0" * 32}
    )
    unlabelled = engine.containers.create(image, name=unique("plain"))
    try:
        kept = make_desired(unique("ag"), make_spec(image))
        await put_desired(test_bus, agent.uuid, kept)
        await reported(test_bus, agent.uuid, kept.name, 1, PodPhase.RUNNING)
        await eventually(lambda: _absent(engine, stray.name), timeout=30)
        assert inspect(engine, stranger.name) is not None
        assert inspect(engine, unlabelled.name) is not None
    finally:
        for container in (stray, stranger, unlabelled):
            with contextlib.suppress(docker.errors.NotFound):
                container.remove(force=True)


async def _absent(engine: docker.DockerClient, name: str) -> bool:
    return inspect(engine, name) is None


async def test_agent_restart_keeps_identity_and_converges(
    nats_url: str, tmp_path: Path, test_bus: Bus, engine: docker.DockerClient, image: str
) -> None:
    """The real entry point as a process: SIGTERM leaves containers running; desired changes made
    while it was down are applied when it comes back with the same identity."""
    state = tmp_path / "state"
    env = {
        **os.environ,
        "TINGYU_NATS_URL": nats_url,
        "TINGYU_STATE_DIR": str(state),
        "TINGYU_AGENT_HEARTBEAT_S": "0.5",
        "TINGYU_AGENT_RESYNC_S": "2",
        "TINGYU_AGENT_STOP_TIMEOUT_S": "1",
    }

    def start() -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [sys.executable, "-m", "tingyu.agent.main"], env=env, stdin=subprocess.DEVNULL
        )

    def stop(proc: subprocess.Popen[bytes]) -> None:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0

    enroll_offline(state / "agent")
    proc = start()
    uuid = ""
    try:
        identity_file = state / "agent" / "identity.json"
        await eventually(lambda: _exists(identity_file), timeout=30)
        uuid = load_or_create(state / "agent").uuid
        first = make_desired(unique("ag"), make_spec(image))
        await put_desired(test_bus, uuid, first)
        before = await reported(test_bus, uuid, first.name, 1, PodPhase.RUNNING)
        stop(proc)
        assert running(engine, first.name)

        # while the agent is down: update the first, add a second
        changed = first.model_copy(
            update={"spec": make_spec(image, env=[EnvVar(key="V", value="2")]), "revision": 2}
        )
        second = make_desired(unique("ag"), make_spec(image))
        await put_desired(test_bus, uuid, changed, second, nudge=False)
        proc = start()
        updated = await reported(test_bus, uuid, first.name, 2, PodPhase.RUNNING)
        await reported(test_bus, uuid, second.name, 1, PodPhase.RUNNING)
        assert updated.container_id != before.container_id
        assert load_or_create(state / "agent").uuid == uuid
        stop(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if uuid:
            remove_node_containers(engine, uuid)


async def _exists(path: Path) -> bool:
    return await asyncio.to_thread(path.exists)


def assert_configured(attrs: dict[str, Any], data: Path, uuid: str) -> None:
    """What the lifecycle's first spec asks of Docker."""
    host = attrs["HostConfig"]
    assert host["NetworkMode"] == "host"
    assert host["RestartPolicy"]["Name"] == "always"
    assert host["NanoCpus"] == 500_000_000
    assert host["CpuShares"] == 256
    assert host["Memory"] == 64 * 2**20
    assert host["MemoryReservation"] == 32 * 2**20
    assert host["Binds"] == [f"{data}:/srv"]
    assert "ROLE=edge" in attrs["Config"]["Env"]
    assert attrs["Config"]["Labels"][LABEL_NODE] == uuid
    assert attrs["State"]["Running"] is True


@pytest.mark.parametrize("agent", [{"resync_s": 300.0}], indirect=True)
async def test_docker_events_bring_a_stopped_container_back(
    agent: RunningAgent, test_bus: Bus, engine: docker.DockerClient, image: str
) -> None:
    """Stopped behind the agent's back (no restart policy applies): the `die` event triggers a pass
    long before the next resync."""
    desired = make_desired(unique("ag"), make_spec(image))
    await put_desired(test_bus, agent.uuid, desired)
    before = await reported(test_bus, agent.uuid, desired.name, 1, PodPhase.RUNNING)
    await asyncio.to_thread(engine.api.stop, desired.name, timeout=1)

    async def started_again() -> bool:
        report = await last_report(test_bus, agent.uuid)
        entry = report.containers[desired.name] if report else None
        newer = entry is not None and (entry.started_at or 0) > (before.started_at or 0)
        return newer and entry is not None and entry.phase == PodPhase.RUNNING

    await eventually(started_again, timeout=20)
    assert running(engine, desired.name)


async def test_nats_outage_loses_no_report(tmp_path: Path, engine: docker.DockerClient, image: str) -> None:
    """NATS goes away: the agent keeps reconciling against the last desired state it read, and the
    report it could not publish arrives once NATS is back."""
    nats = nats_only(tmp_path)
    url = nats.config.nats_url
    own_bus = await Bus.connect(PlatformSettings(nats_url=url), "agent-outage-tests")
    settings = agent_settings(url, tmp_path / "state").model_copy(update={"resync_s": 300.0})
    uuid = enroll_offline(settings.state_dir)
    stop = asyncio.Event()
    task = asyncio.create_task(run_agent(stop, settings))
    try:
        desired = make_desired(unique("ag"), make_spec(image))
        await put_desired(own_bus, uuid, desired)
        before = await reported(own_bus, uuid, desired.name, 1, PodPhase.RUNNING)

        nats.kill("nats", signal.SIGTERM)
        await asyncio.to_thread(engine.api.stop, desired.name, timeout=1)
        # brought back from the remembered desired state while NATS is still away
        await eventually(lambda: _running_async(engine, desired.name), timeout=20)

        nats.start_nats()

        async def published_after_outage() -> bool:
            report = await last_report(own_bus, uuid)
            entry = report.containers.get(desired.name) if report else None
            return entry is not None and (entry.started_at or 0) > (before.started_at or 0)

        await eventually(published_after_outage, timeout=30)
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
        await own_bus.close()
        nats.stop()
        remove_node_containers(engine, uuid)


async def _running_async(engine: docker.DockerClient, name: str) -> bool:
    return await asyncio.to_thread(running, engine, name)
