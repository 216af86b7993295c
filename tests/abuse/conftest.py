"""What every abuse test checks afterwards: the API is still connected to NATS and still answers."""

from __future__ import annotations

import httpx

from tingyu.common import subjects
from tingyu.common.bus import Bus


async def assert_alive(api: httpx.AsyncClient, node_uuid: str) -> None:
    """`/healthz` says NATS is connected and a valid call that reads NATS answers."""
    health = (await api.get("/healthz")).json()
    assert health == {"msg": "success", "code": 200, "data": {"nats": True}}
    found = (await api.get("/node/get", params={"name": node_uuid})).json()
    assert found["code"] == 200, found
    assert found["data"][0]["uuid"] == node_uuid
    unknown = (await api.get("/task/status", params={"jobid": "0" * 32})).json()
    assert unknown["info"][0]["code"] == 500


async def assert_untouched(bus: Bus, name: str) -> None:
    """No name claim and no job for deployment `name` (nor any name that starts with it)."""
    assert await bus.store(subjects.NAMES).get(name) is None
    jobs = await bus.store(subjects.JOBS).values()
    assert not [job for job in jobs if job.deploymentname.startswith(name)]
