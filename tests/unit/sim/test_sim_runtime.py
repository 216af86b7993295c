"""The simulated engine and simulated machines, without NATS."""

from __future__ import annotations

import pytest

from tingyu.agent.reconciler import Reconciler
from tingyu.agent.runtime import RuntimeFailure
from tingyu.common.models.containers import (
    ContainerSpec,
    DesiredContainer,
    DesiredState,
    NodeDesired,
    PodPhase,
)
from tingyu.sim import machines, traffic
from tingyu.sim.runtime import SimRuntime


def desired(uuid: str, *names: str, state: DesiredState = DesiredState.RUNNING) -> NodeDesired:
    spec = ContainerSpec(image="127.0.0.1:5000/sim/x", imageversion="1", image_ref="127.0.0.1:5000/sim/x:1")
    return NodeDesired(
        node_uuid=uuid,
        containers={
            n: DesiredContainer(name=n, spec=spec, state=state, job_id="j" * 32, created_at=0.0)
            for n in names
        },
    )


async def test_reconciler_runs_stops_and_removes_simulated_containers() -> None:
    runtime = SimRuntime()
    uuid = machines.identity("unit", 0).uuid
    reconciler = Reconciler(runtime, uuid)
    seen = await reconciler.reconcile(desired(uuid, "a", "b"))
    assert {n: c.phase for n, c in seen.items()} == {"a": PodPhase.RUNNING, "b": PodPhase.RUNNING}
    seen = await reconciler.reconcile(desired(uuid, "a", state=DesiredState.STOPPED))
    assert seen["a"].phase == PodPhase.STOPPED
    assert [c.name for c in await runtime.list_node(uuid)] == ["a"]  # b was a stray: removed
    changes = runtime.changes(uuid)
    await reconciler.reconcile(desired(uuid, "a", state=DesiredState.STOPPED))
    assert runtime.changes(uuid) == changes  # an idle pass changes nothing


async def test_failure_rate_fails_the_same_deployments_every_time() -> None:
    uuid = machines.identity("unit", 1).uuid
    names = [f"d{i}" for i in range(200)]
    first = await Reconciler(SimRuntime(failure_rate=0.3), uuid).reconcile(desired(uuid, *names))
    again = await Reconciler(SimRuntime(failure_rate=0.3), uuid).reconcile(desired(uuid, *names))
    failed = {n for n, c in first.items() if c.phase == PodPhase.FAILED}
    assert failed == {n for n, c in again.items() if c.phase == PodPhase.FAILED}
    assert 30 < len(failed) < 90
    assert all("simulated failure" in first[n].message for n in failed)


async def test_files_are_not_simulated() -> None:
    with pytest.raises(RuntimeFailure, match="not simulated"):
        await SimRuntime().open_file("x", "/etc/hosts", 1024)


def test_machines_are_deterministic_and_mixed() -> None:
    fleet = [machines.facts(machines.identity("unit", i), i) for i in range(60)]
    assert machines.identity("unit", 5) == machines.identity("unit", 5)
    assert len({f.uuid for f in fleet}) == 60
    assert {f.area for f in fleet} == set(machines.AREAS)
    assert {f.operator for f in fleet} == {"移动", "联通", "电信"}
    assert all(f.osimage == machines.OS_IMAGE for f in fleet)


def test_traffic_is_deterministic_and_follows_the_day() -> None:
    facts = machines.facts(machines.identity("unit", 3), 3)
    evening = 1_790_000_000.0 - 1_790_000_000.0 % 86400 + 13 * 3600  # 21:00 Beijing time
    morning = evening - 16 * 3600  # 05:00
    assert traffic.mbps(facts, evening) == traffic.mbps(facts, evening)
    assert traffic.mbps(facts, evening) > traffic.mbps(facts, morning)
    assert 0 < traffic.bytes_between(facts, evening, evening + 60) <= facts.bandwith * 1e6 / 8 * 60
