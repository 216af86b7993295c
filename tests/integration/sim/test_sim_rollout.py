"""A canary rollout over a simulated fleet: the share asked for, per area and ISP, moves; others stay."""

from __future__ import annotations

import asyncio
import math
from typing import Any

import httpx

from tests.integration.sim.test_sim_fleet import all_ready, item, job_reaches, start_fleet
from tests.support import eventually, unique
from tingyu.common.bus import Bus
from tingyu.common.desired import DesiredStore


async def versions(bus: Bus, placed: dict[str, str]) -> dict[str, str]:
    """deployment -> image version in its machine's desired state."""
    desired = DesiredStore(bus)
    out = {}
    for name, uuid in placed.items():
        entry = await desired.get(uuid, name)
        assert entry is not None
        out[name] = entry.spec.imageversion
    return out


async def test_rollout_over_simulated_machines_of_one_area_and_isp(api: httpx.AsyncClient, bus: Bus) -> None:
    running = await start_fleet(bus, 40, start_latency_s=0.02)
    try:
        nodes = await eventually(lambda: all_ready(api, running.uuids), timeout=40)
        by_uuid = {n["uuid"]: n for n in nodes}
        image = f"127.0.0.1:5000/tysim/{unique('canary')}"
        placed: dict[str, str] = {}
        jobs = []
        for uuid in running.uuids:
            name = unique("sim")
            body: dict[str, Any] = {**item(uuid, name), "image": image}
            answer = (await api.post("/container/create", json=[body])).json()["data"][0]
            assert answer["code"] == 200, answer
            placed[name] = uuid
            jobs.append(answer["jobid"])
        await asyncio.gather(*(job_reaches(api, job, 3) for job in jobs))

        area, operator = by_uuid[running.uuids[0]]["area"], by_uuid[running.uuids[0]]["operator"]
        members = {
            n for n, u in placed.items() if (by_uuid[u]["area"], by_uuid[u]["operator"]) == (area, operator)
        }
        assert members
        request = {"area": area, "operator": operator, "percent": 50, "image": image, "imageversion": "2"}
        answer = (await api.put("/container/updateByInherit", json=request)).json()
        assert answer["code"] == 200, answer
        done = await job_reaches(api, answer["jobid"], 3)
        assert done["result"]["total"] == len(members)
        now = await versions(bus, placed)
        moved = {n for n, v in now.items() if v == "2"}
        assert moved <= members  # nothing outside that area and ISP
        assert len(moved) == math.ceil(len(members) * 50 / 100)
    finally:
        await running.halt()
