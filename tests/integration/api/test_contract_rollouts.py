"""Rollouts re-plan on every call, and can be read, paused, resumed and aborted (peers play the machines)."""

from __future__ import annotations

from typing import Any

import httpx

from tests.integration.api.test_rollouts_api import Fleet, accepted, fleet, job_info, wait_job
from tests.support import eventually
from tingyu.common.models.containers import DesiredContainer, DesiredState, PodPhase

__all__ = ["fleet"]  # the fixture, shared with the rollout tests


def honest(entry: DesiredContainer) -> PodPhase:
    """A machine that does what it is asked, deletes included."""
    return PodPhase.DELETED if entry.state == DesiredState.ABSENT else PodPhase.RUNNING


async def rollout(fleet: Fleet, path: str = "", method: str = "GET") -> dict[str, Any]:
    params = {"area": fleet.area, "operator": "移动", "image": fleet.image}
    answer: dict[str, Any] = (
        await fleet.api.request(method, f"/container/rollout{path}", params=params)
    ).json()
    return answer


async def test_a_new_call_after_a_finished_run_targets_the_containers_present_now(
    api: httpx.AsyncClient, fleet: Fleet
) -> None:
    await fleet.machine(1, phase=honest)
    whole = await accepted(fleet, 100)
    assert (await wait_job(api, whole, 3))["result"]["updated"] == 1
    # The container that was moved goes away, a new one at the old version arrives.
    (gone,) = list(fleet.names)
    delete = (await api.delete("/container/delete", params={"name": gone})).json()["data"][0]
    del fleet.names[gone]
    await fleet.machine(1)
    assert delete["code"] == 200
    await wait_job(api, delete["jobid"], 3)

    again = await accepted(fleet, 100)
    result = (await wait_job(api, again, 3))["result"]
    assert (result["total"], result["target"], result["updated"]) == (1, 1, 1)
    assert await fleet.at("2") == set(fleet.names)  # the new container moved, not just counted
    view = (await rollout(fleet))["data"]
    assert [m["deploymentname"] for m in view["members"]] == list(fleet.names)


async def test_pause_holds_new_upgrades_resume_finishes_and_abort_fails_the_run(
    api: httpx.AsyncClient, fleet: Fleet
) -> None:
    assert (await rollout(fleet))["code"] == "TY0033"
    await fleet.machine(3, delay=1.0)
    await fleet.machine(3, delay=1.0)
    jobid = await accepted(fleet, 100)

    async def issued() -> dict[str, Any] | None:
        view = (await rollout(fleet)).get("data") or {}  # TY0033 until the deployer recorded the call
        return view if view.get("inflight", 0) > 0 else None

    await eventually(issued, timeout=20, every=0.1)
    paused = await rollout(fleet, "/pause", "PUT")
    assert (paused["code"], paused["data"]["status"]) == (200, "paused"), paused

    async def drained() -> dict[str, Any] | None:
        view = (await rollout(fleet))["data"]
        return view if view["inflight"] == 0 else None

    held = await eventually(drained, timeout=20, every=0.2)
    assert held["pending"] > 0
    assert (await job_info(api, jobid))["state"] == 2  # still running, as the rollout is
    moved = len(await fleet.at("2"))
    assert moved == held["updated"]
    assert len(await fleet.at("2")) == moved  # nothing new while paused (checked again after the wait)

    resumed = await rollout(fleet, "/resume", "PUT")
    assert resumed["data"]["status"] == "running"
    assert (await wait_job(api, jobid, 3, timeout=60))["result"]["updated"] == 6
    assert (await rollout(fleet, "/pause", "PUT"))["code"] == "TY0003"  # the run has ended

    # A new version, then an abort: its job fails, and a later call starts a new run that finishes.
    third = await accepted(fleet, 100, version="3")

    async def recorded() -> bool:
        return bool((await rollout(fleet))["data"]["jobids"] == [third])

    await eventually(recorded, timeout=20, every=0.1)
    assert (await rollout(fleet, "/abort", "PUT"))["data"]["status"] == "aborted"
    aborted = await wait_job(api, third, 4)
    assert "aborted by request" in aborted["message"]
    fourth = await accepted(fleet, 100, version="3")
    assert (await wait_job(api, fourth, 3, timeout=60))["result"]["updated"] == 6
    view = (await rollout(fleet))["data"]
    assert (view["status"], view["imageversion"], view["jobids"]) == ("succeeded", "3", [fourth])
    assert len(view["members"]) == 6
