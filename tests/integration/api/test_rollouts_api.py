"""Canary rollouts over HTTP against real NATS, nodes and deployer, with peers playing the machines.

The platform runs with max unavailable 2, min executed 2 and the default 20 % abort threshold.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from tests.support import eventually, unique
from tests.support.peer import PeerMachine, cancel
from tingyu.common import subjects
from tingyu.common.bus import Bus
from tingyu.common.models.containers import DesiredContainer, PodPhase

MAX_UNAVAILABLE = 2
Phase = Callable[[DesiredContainer], PodPhase]


def running(_: DesiredContainer) -> PodPhase:
    return PodPhase.RUNNING


def failing_upgrades(entry: DesiredContainer) -> PodPhase:
    return PodPhase.FAILED if entry.spec.imageversion != "1" else PodPhase.RUNNING


async def answer(peer: PeerMachine, phase: Phase, delay: float) -> None:
    """Plays the agent: every new desired revision is reported back with `phase` after `delay`."""
    seen: dict[str, int] = {}
    while True:
        doc = await peer.desired()
        if doc is not None and {n: e.revision for n, e in doc.containers.items()} != seen:
            await asyncio.sleep(delay)
            doc = await peer.desired()
            assert doc is not None
            seen = {n: e.revision for n, e in doc.containers.items()}
            phases = {n: phase(e) for n, e in doc.containers.items()}
            await peer.report(phases, message="boom", applied=doc)
        await asyncio.sleep(0.1)


class Fleet:
    """Peers with containers of one image, each answered by a background reporter."""

    def __init__(self, api: httpx.AsyncClient, bus: Bus) -> None:
        self.api = api
        self.bus = bus
        self.image = f"127.0.0.1:5000/tytest/{unique('roll')}"
        self.area = unique("区")
        self.peers: list[PeerMachine] = []
        self.names: dict[str, PeerMachine] = {}
        self.tasks: list[asyncio.Task[None]] = []

    async def machine(
        self,
        containers: int,
        *,
        area: str = "",
        operator: str = "移动",
        phase: Phase = running,
        delay: float = 0.0,
    ) -> PeerMachine:
        peer = PeerMachine(self.bus, area=area or self.area, operator=operator)
        peer.start()
        self.peers.append(peer)
        self.tasks.append(asyncio.create_task(answer(peer, phase, delay)))

        async def ready() -> bool:
            body = (await self.api.get("/node/get", params={"name": peer.facts.nodename})).json()
            return body["code"] == 200 and body["data"][0]["status"] == "Ready"

        await eventually(ready, timeout=20)
        items = [self.item(peer.uuid) for _ in range(containers)]
        body = (await self.api.post("/container/create", json=items)).json()
        for result in body["data"]:
            assert result["code"] == 200, result
            self.names[result["deploymentname"]] = peer
            await wait_job(self.api, result["jobid"], 3)
        return peer

    async def silence(self, peer: PeerMachine) -> None:
        """Stop the peer's heartbeats and wait until the registry calls it NotReady."""
        await peer.stop()

        async def not_ready() -> bool:
            body = (await self.api.get("/node/get", params={"name": peer.facts.nodename})).json()
            return bool(body["data"][0]["status"] == "NotReady")

        await eventually(not_ready, timeout=30)

    def item(self, uuid: str) -> dict[str, Any]:
        return {"uuid": uuid, "image": self.image, "imageversion": "1", "deploymentname": unique()}

    async def versions(self) -> dict[str, tuple[str, int]]:
        """Every container's desired (imageversion, revision)."""
        out = {}
        for name, peer in self.names.items():
            doc = await peer.desired()
            assert doc is not None
            entry = doc.containers[name]
            out[name] = (entry.spec.imageversion, entry.revision)
        return out

    async def tried(self, version: str) -> set[str]:
        """Containers that run `version` or tried it and were rolled back."""
        out = set()
        for name, peer in self.names.items():
            doc = await peer.desired()
            assert doc is not None
            entry = doc.containers[name]
            if entry.spec.imageversion == version or (entry.failed and entry.failed.imageversion == version):
                out.add(name)
        return out

    async def at(self, version: str, peers: list[PeerMachine] | None = None) -> set[str]:
        chosen = peers if peers is not None else self.peers
        return {
            n for n, (v, _) in (await self.versions()).items() if v == version and self.names[n] in chosen
        }

    async def rollout(self, percent: Any, version: str = "2", **fields: Any) -> dict[str, Any]:
        body = {"area": self.area, "operator": "移动", "percent": percent, "image": self.image}
        body.update({"imageversion": version, **fields})
        answer: dict[str, Any] = (await self.api.put("/container/updateByInherit", json=body)).json()
        return answer

    async def close(self) -> None:
        for task in self.tasks:
            await cancel(task)
        for peer in self.peers:
            await peer.stop()


@pytest.fixture
async def fleet(api: httpx.AsyncClient, bus: Bus) -> AsyncIterator[Fleet]:
    made = Fleet(api, bus)
    yield made
    await made.close()


async def job_info(api: httpx.AsyncClient, jobid: str) -> dict[str, Any]:
    info: dict[str, Any] = (await api.get("/task/status", params={"jobid": jobid})).json()["info"][0]
    return info


async def wait_job(api: httpx.AsyncClient, jobid: str, state: int, timeout: float = 30) -> dict[str, Any]:
    async def reached() -> dict[str, Any] | None:
        info = await job_info(api, jobid)
        return info if info.get("state") == state else None

    return await eventually(reached, timeout=timeout)


async def accepted(fleet: Fleet, percent: Any, version: str = "2") -> str:
    body = await fleet.rollout(percent, version)
    assert (body["msg"], body["code"], body["data"]) == ("success", 200, None)
    jobid: str = body["jobid"]
    return jobid


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"operator": "铁通"}, "TY0032"),
        ({"operator": None, "percent": "lots", "area": ""}, "TY0032"),
        ({"percent": 101}, "TY0003"),
        ({"percent": -1}, "TY0003"),
        ({"percent": "50"}, "TY0003"),
        ({"percent": None}, "TY0002"),
        ({"area": ""}, "TY0002"),
        ({"image": ""}, "TY0002"),
        ({"image": "nosuchimage", "imageversion": "1"}, "TY0003"),
    ],
)
async def test_bad_input_is_refused_with_its_code(fleet: Fleet, fields: dict[str, Any], code: str) -> None:
    body = await fleet.rollout(**{"percent": 50, **fields})
    assert body["code"] == code
    if code == "TY0032":
        assert body == {"msg": "运营商错误!正确为移动、联通和电信!", "code": "TY0032"}
    assert "jobid" not in body


async def test_percent_moves_a_share_and_a_higher_percent_extends_it(
    api: httpx.AsyncClient, fleet: Fleet
) -> None:
    inside = [await fleet.machine(2), await fleet.machine(2)]
    elsewhere = [await fleet.machine(1, area=unique("区")), await fleet.machine(1, operator="联通")]

    half = await accepted(fleet, 50)
    done = await wait_job(api, half, 3)
    result = done["result"]
    assert (result["total"], result["target"], result["updated"], result["failed"]) == (4, 2, 2, 0)
    assert result["status"] == "succeeded"
    first = await fleet.at("2")
    assert len(first) == 2
    assert len(await fleet.at("1", inside)) == 2
    assert len(await fleet.at("1", elsewhere)) == 2
    before = await fleet.versions()

    whole = await accepted(fleet, 100)
    assert (await wait_job(api, whole, 3))["result"]["updated"] == 4
    after = await fleet.versions()
    assert len(await fleet.at("2", inside)) == 4
    assert all(after[name] == before[name] for name in first)  # the first half was not touched again
    assert len(await fleet.at("1", elsewhere)) == 2

    # A lower percent changes nothing already done and finishes at once.
    lower = await accepted(fleet, 10)
    assert (await wait_job(api, lower, 3))["result"]["updated"] == 4
    assert await fleet.versions() == after


async def test_batches_are_bounded_by_max_unavailable(api: httpx.AsyncClient, fleet: Fleet) -> None:
    await fleet.machine(3, delay=0.6)
    await fleet.machine(3, delay=0.6)
    jobid = await accepted(fleet, 100)

    async def finished() -> bool:
        moved = len(await fleet.at("2"))  # read before the job: `updated` only grows
        info = await job_info(api, jobid)
        result = info.get("result", {})
        if not result:
            return False
        assert result["inflight"] <= MAX_UNAVAILABLE
        assert moved <= result["updated"] + MAX_UNAVAILABLE
        return bool(info["state"] == 3)

    await eventually(finished, timeout=40, every=0.1)
    assert len(await fleet.at("2")) == 6
    # From the upgrade jobs' own times (not from polling): how many were open at once, at most.
    jobs = await fleet.bus.store(subjects.JOBS).values()
    upgrades = [j for j in jobs if j.op == "upgrade" and j.deploymentname in fleet.names]
    assert len(upgrades) == 6
    assert widest_overlap([(j.created_at, j.updated_at) for j in upgrades]) == MAX_UNAVAILABLE


def widest_overlap(spans: list[tuple[float, float]]) -> int:
    """The most spans open at one moment (a span that ends when another starts does not overlap it)."""
    events = sorted([(end, -1) for _, end in spans] + [(start, 1) for start, _ in spans])
    open_, widest = 0, 0
    for _, change in events:
        open_ += change
        widest = max(widest, open_)
    return widest


async def test_failures_past_the_threshold_abort_the_rollout(api: httpx.AsyncClient, fleet: Fleet) -> None:
    await fleet.machine(3, phase=failing_upgrades)
    await fleet.machine(3, phase=failing_upgrades)
    jobid = await accepted(fleet, 100)
    aborted = await wait_job(api, jobid, 4)
    result = aborted["result"]
    assert result["status"] == "aborted"
    assert result["failed"] >= 2
    assert "rollout aborted" in aborted["message"]
    assert "(boom; rolled back to " in aborted["message"]
    moved = await fleet.tried("2")  # a failed upgrade is rolled back: the attempt is what remains
    assert len(moved) <= MAX_UNAVAILABLE + 1
    assert any(name in aborted["message"] for name in moved)
    assert result["pending"] == 6 - len(moved)


async def test_not_ready_machine_is_skipped_then_caught_up(api: httpx.AsyncClient, fleet: Fleet) -> None:
    awake = await fleet.machine(2)
    asleep = await fleet.machine(2)
    await fleet.silence(asleep)
    jobid = await accepted(fleet, 100)

    async def waiting() -> dict[str, Any] | None:
        result = (await job_info(api, jobid)).get("result", {})
        return result if result.get("updated") == 2 and result.get("waiting_notready") == 2 else None

    result = await eventually(waiting, timeout=30)
    assert result["status"] == "running"
    assert (await job_info(api, jobid))["state"] == 2
    assert len(await fleet.at("2", [awake])) == 2
    assert await fleet.at("2", [asleep]) == set()

    asleep.start()
    done = await wait_job(api, jobid, 3)
    assert (done["result"]["updated"], done["result"]["waiting_notready"]) == (4, 0)
    assert len(await fleet.at("2", [asleep])) == 2


async def test_another_version_supersedes_a_running_rollout(api: httpx.AsyncClient, fleet: Fleet) -> None:
    await fleet.machine(2)
    await fleet.silence(await fleet.machine(1))
    old = await accepted(fleet, 100)

    async def waiting() -> bool:
        return bool((await job_info(api, old)).get("result", {}).get("waiting_notready") == 1)

    await eventually(waiting, timeout=30)
    new = await accepted(fleet, 50, version="3")
    failed = await wait_job(api, old, 4)
    assert failed["message"] == f"superseded by job {new}"
    assert failed["result"]["status"] == "superseded"
    result = (await wait_job(api, new, 2))["result"]
    assert (result["rolloutid"], result["imageversion"], result["target"]) == (
        failed["result"]["rolloutid"],
        "3",
        2,
    )


async def test_a_rollout_waits_for_a_command_in_flight_on_its_container(
    api: httpx.AsyncClient, fleet: Fleet
) -> None:
    """A container created while the rollout starts is upgraded after its create ends, never over
    it: the create succeeds, then the rollout moves the container."""
    held: set[str] = set()

    def phase(entry: DesiredContainer) -> PodPhase:
        return PodPhase.PENDING if entry.name in held else PodPhase.RUNNING

    peer = await fleet.machine(1, phase=phase)
    item = fleet.item(peer.uuid)
    held.add(item["deploymentname"])  # the machine reports it Pending: its create stays in flight
    body = (await api.post("/container/create", json=[item])).json()
    [created] = body["data"]
    fleet.names[created["deploymentname"]] = peer
    await wait_job(api, created["jobid"], 2)
    jobid = await accepted(fleet, 100)

    async def first_moved() -> dict[str, Any] | None:
        result = (await job_info(api, jobid)).get("result", {})
        return result if result.get("updated") == 1 else None

    result = await eventually(first_moved, timeout=30)
    await asyncio.sleep(2)  # several rollout ticks
    result = (await job_info(api, jobid))["result"]
    assert (result["updated"], result["pending"], result["failed"]) == (1, 1, 0)
    assert (await fleet.versions())[created["deploymentname"]] == ("1", 1)
    assert (await job_info(api, created["jobid"]))["state"] == 2

    held.clear()  # it runs now
    doc = await peer.desired()
    assert doc is not None
    await peer.report(dict.fromkeys(doc.containers, PodPhase.RUNNING), applied=doc)
    await wait_job(api, created["jobid"], 3)
    done = await wait_job(api, jobid, 3)
    assert (done["result"]["updated"], done["result"]["failed"]) == (2, 0)
    assert await fleet.at("2") == set(fleet.names)
