"""Logs and exec refusals that need a machine the test controls: a peer plays it (heartbeats, no
responders), so the API's answers for a NotReady machine and an absent agent can be checked."""

from __future__ import annotations

import json

import httpx
from websockets.asyncio.client import connect

from tests.integration.api.test_containers_api import item, ready_peer
from tests.support import bearer, eventually, unique
from tests.support.peer import PeerMachine
from tingyu.cli.launcher import Platform
from tingyu.common.bus import Bus


async def deployed(api: httpx.AsyncClient, peer: PeerMachine) -> str:
    """A deployment whose desired state is written on the peer's machine."""
    name = unique("rem")
    answer = (await api.post("/container/create", json=[item(peer.uuid, name)])).json()
    assert answer["data"][0]["code"] == 200, answer

    async def written() -> bool:
        doc = await peer.desired()
        return doc is not None and name in doc.containers

    await eventually(written, timeout=20)
    return name


async def test_an_agent_that_does_not_answer_is_unavailable(api: httpx.AsyncClient, bus: Bus) -> None:
    peer = await ready_peer(api, bus)
    try:
        name = await deployed(api, peer)
        for answer in (
            (await api.get("/container/logs", params={"name": name})).json(),
            (await api.get("/container/logs", params={"name": name, "follow": "true"})).json(),
            (await api.post("/container/exec", json={"name": name, "cmd": ["true"]})).json(),
        ):
            assert answer["code"] == "TY0010", answer
            assert f"the agent of machine {peer.uuid} is not answering" in answer["detail"]
    finally:
        await peer.stop()


async def test_a_not_ready_machine_is_refused_with_the_contract_message(
    api: httpx.AsyncClient, bus: Bus, platform: Platform
) -> None:
    peer = await ready_peer(api, bus)
    name = await deployed(api, peer)
    await peer.stop()

    async def not_ready() -> bool:
        node = (await api.get("/node/get", params={"name": peer.facts.nodename})).json()["data"][0]
        return bool(node["status"] == "NotReady")

    await eventually(not_ready, timeout=30)
    for answer in (
        (await api.get("/container/logs", params={"name": name})).json(),
        (await api.post("/container/exec", json={"name": name, "cmd": ["true"]})).json(),
    ):
        assert (answer["code"], answer["msg"]) == ("TY0019", "Node is not ready"), answer
    url = platform.config.api_url.replace("http://", "ws://", 1)
    async with connect(f"{url}/container/exec?name={name}&cmd=sh", additional_headers=bearer()) as ws:
        refusal = json.loads(await ws.recv())
    assert (refusal["code"], refusal["msg"]) == ("TY0019", "Node is not ready")
