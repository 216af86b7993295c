"""Container interfaces over HTTP against real NATS, nodes and deployer, with a peer playing the machine."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.support import eventually, unique
from tests.support.peer import PeerMachine
from tingyu.common import subjects
from tingyu.common.bus import Bus
from tingyu.common.models.containers import DesiredState, PodPhase

IMAGE = "127.0.0.1:5000/tytest/busybox"


def item(uuid: str, name: str, **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "uuid": uuid,
        "image": IMAGE,
        "imageversion": "1",
        "deploymentname": name,
        "env": [{"key": "port", "value": "6555"}],
        "volumes": [{"hostPath": "/tmp", "mountPath": "/storage"}],
        "requestscpu": 0.1,
        "requestsmemory": 16,
        "limitscpu": 0.5,
        "limitsmemory": 64,
    }
    body.update(fields)
    return body


async def ready_peer(api: httpx.AsyncClient, bus: Bus) -> PeerMachine:
    peer = PeerMachine(bus)
    peer.start()

    async def registered() -> bool:
        body = (await api.get("/node/get", params={"name": peer.facts.nodename})).json()
        return body["code"] == 200 and body["data"][0]["status"] == "Ready"

    await eventually(registered, timeout=20)
    return peer


async def job_state(api: httpx.AsyncClient, jobid: str) -> dict[str, Any]:
    body = (await api.get("/task/status", params={"jobid": jobid})).json()
    assert body["code"] == 200
    info: dict[str, Any] = body["info"][0]
    return info


async def wait_job(api: httpx.AsyncClient, jobid: str, state: int) -> dict[str, Any]:
    async def reached() -> dict[str, Any] | None:
        info = await job_state(api, jobid)
        return info if info["state"] == state else None

    return await eventually(reached, timeout=20)


@pytest.fixture
async def peer(api: httpx.AsyncClient, bus: Bus) -> Any:
    machine = await ready_peer(api, bus)
    yield machine
    await machine.stop()


async def test_node_is_registered_with_contract_fields(api: httpx.AsyncClient, peer: PeerMachine) -> None:
    body = (await api.get("/node/get", params={"name": peer.facts.nodename})).json()
    node = body["data"][0]
    assert node["uuid"] == peer.uuid
    assert (node["area"], node["operator"], node["cpu"], node["memory"]) == ("南京", "移动", 4, 8192)
    assert isinstance(node["eth"], str)
    assert isinstance(node["diskinfo"], str)
    listed = (await api.get("/node/list")).json()["data"]
    assert peer.uuid in {n["uuid"] for n in listed}


async def test_create_dispatches_and_completes_from_report(
    api: httpx.AsyncClient, bus: Bus, peer: PeerMachine
) -> None:
    name = unique()
    body = (await api.post("/container/create", json=[item(peer.uuid, name)])).json()
    assert body["code"] == 200
    [result] = body["data"]
    assert (result["code"], result["deploymentname"]) == (200, name)
    jobid = result["jobid"]
    dispatched = await wait_job(api, jobid, 1)
    assert (dispatched["deviceid"], dispatched["uuid"]) == (peer.uuid, peer.facts.nodename)

    doc = await peer.desired()
    assert doc is not None
    entry = doc.containers[name]
    assert (entry.state, entry.revision, entry.spec.limits_memory) == (DesiredState.RUNNING, 1, 64)
    claim = await bus.store(subjects.NAMES).get(name)
    assert claim is not None
    assert claim.node_uuid == peer.uuid

    await peer.report({name: PodPhase.RUNNING})
    await wait_job(api, jobid, 3)
    got = (await api.post("/container/get", params={"name": name})).json()["data"][0]
    assert got["data"]["image"] == f"{IMAGE}:1"
    assert got["data"]["network"] == "host"
    assert got["data"]["env"] == [{"key": "port", "value": "6555"}]
    info = (await api.post("/container/info", params={"name": name})).json()["data"][0]
    assert info["data"]["podinfo"][0]["podstate"] == "Running"
    listed = (await api.post("/container/list", params={"uuid": peer.uuid})).json()["data"]
    assert [c["name"] for c in listed] == [name]


async def test_failed_report_fails_the_job_with_reason(api: httpx.AsyncClient, peer: PeerMachine) -> None:
    name = unique()
    jobid = (await api.post("/container/create", json=[item(peer.uuid, name)])).json()["data"][0]["jobid"]
    await wait_job(api, jobid, 1)
    await peer.report({name: PodPhase.FAILED}, message="image not found: nope")
    failed = await wait_job(api, jobid, 4)
    assert failed["message"] == "image not found: nope"


async def test_duplicate_name_is_refused_and_original_untouched(
    api: httpx.AsyncClient, peer: PeerMachine
) -> None:
    name = unique()
    first = (await api.post("/container/create", json=[item(peer.uuid, name, limitsmemory=64)])).json()
    again = (await api.post("/container/create", json=[item(peer.uuid, name, limitsmemory=128)])).json()
    assert again["data"][0]["code"] == 500
    assert "already exists" in again["data"][0]["message"]
    await wait_job(api, first["data"][0]["jobid"], 1)
    doc = await peer.desired()
    assert doc is not None
    assert doc.containers[name].spec.limits_memory == 64


async def test_unknown_uuid_is_ty0015_and_creates_nothing(
    api: httpx.AsyncClient, bus: Bus, peer: PeerMachine
) -> None:
    name, other = unique(), unique()
    body = (
        await api.post(
            "/container/create",
            json=[item(peer.uuid, name), item("tingyu-" + "f" * 32, other)],
        )
    ).json()
    assert body == {"msg": "uuid不存在!", "code": "TY0015"}
    claim = await bus.store(subjects.NAMES).get(name)
    assert claim is None


async def test_not_ready_machine_gets_per_item_500(api: httpx.AsyncClient, bus: Bus) -> None:
    peer = await ready_peer(api, bus)
    await peer.stop()

    async def not_ready() -> bool:
        node = (await api.get("/node/get", params={"name": peer.facts.nodename})).json()["data"][0]
        return node["status"] == "NotReady"

    await eventually(not_ready, timeout=30)
    body = (await api.post("/container/create", json=[item(peer.uuid, unique())])).json()
    assert body["data"][0]["code"] == 500
    assert body["data"][0]["message"] == "Node is not ready"


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        ("not json", "TY0001"),
        ({"uuid": "x"}, "TY0001"),
        ([{"image": "x", "deploymentname": "ok"}], "TY0002"),
        ([{"uuid": "u", "image": "x", "deploymentname": "Bad_Name"}], "TY0001"),
        ([{"uuid": "u", "image": "x", "deploymentname": "ok", "limitscpu": -1}], "TY0001"),
        ([{"uuid": "u", "image": "x", "deploymentname": "ok", "requestsmemory": "lots"}], "TY0001"),
        (
            [
                {
                    "uuid": "u",
                    "image": "x",
                    "deploymentname": "ok",
                    "volumes": [{"hostPath": "rel", "mountPath": "/a"}],
                }
            ],
            "TY0001",
        ),
        ([], "TY0002"),
    ],
)
async def test_bad_input_gets_envelope_error(api: httpx.AsyncClient, payload: Any, code: str) -> None:
    if isinstance(payload, str):
        response = await api.post(
            "/container/create", content=payload, headers={"content-type": "application/json"}
        )
    else:
        response = await api.post("/container/create", json=payload)
    body = response.json()
    assert body["code"] == code
    assert body["msg"]
    assert "Traceback" not in response.text


async def test_unknown_names_in_reads_and_lifecycle(api: httpx.AsyncClient) -> None:
    name = unique()
    got = (await api.post("/container/get", params={"name": name})).json()
    assert got["data"] == [
        {"code": 500, "data": {"name": name}, "message": f'deployments.apps "{name}" not found'}
    ]
    stopped = (await api.post("/container/stop", params={"name": name})).json()
    assert stopped["data"][0]["code"] == 500
    assert stopped["data"][0]["message"] == f'deployments.apps "{name}" not found', stopped
    assert "jobid" not in stopped["data"][0]
    assert (await api.post("/container/list", params={"uuid": "tingyu-" + "e" * 32})).json()[
        "code"
    ] == "TY0015"
    assert (await api.get("/task/status", params={"jobid": "0" * 32})).json()["info"][0]["code"] == 500
    # The contract's example asks for `jobid=jobid`: a value that may be a key is answered per item,
    # one that can be no key (a dot, a newline, over 64 characters) is refused.
    nope = (await api.get("/task/status", params={"jobid": "nope"})).json()
    assert nope["info"] == [{"code": 500, "jobid": "nope", "message": "job nope not found"}]
    assert (await api.get("/task/status", params={"jobid": "no.pe"})).json()["code"] == "TY0003"
    assert (await api.get("/task/status")).json()["code"] == "TY0002"


async def test_lifecycle_ops_bump_revision_and_delete_frees_name(
    api: httpx.AsyncClient, bus: Bus, peer: PeerMachine
) -> None:
    name = unique()
    jobid = (await api.post("/container/create", json=[item(peer.uuid, name)])).json()["data"][0]["jobid"]
    await wait_job(api, jobid, 1)
    await peer.report({name: PodPhase.RUNNING})
    await wait_job(api, jobid, 3)

    stop = (await api.post("/container/stop", params={"name": name})).json()
    assert stop["msg"] == "停止成功!"
    stop_job = stop["data"][0]["jobid"]
    await wait_job(api, stop_job, 1)
    doc = await peer.desired()
    assert doc is not None
    assert (doc.containers[name].state, doc.containers[name].revision) == (DesiredState.STOPPED, 2)
    await peer.report({name: PodPhase.STOPPED})
    await wait_job(api, stop_job, 3)

    delete = (await api.delete("/container/delete", params={"name": name})).json()
    delete_job = delete["data"][0]["jobid"]
    await wait_job(api, delete_job, 1)
    await peer.report({name: PodPhase.DELETED})
    await wait_job(api, delete_job, 3)

    async def freed() -> bool:
        claim = await bus.store(subjects.NAMES).get(name)
        doc = await peer.desired()
        return claim is None and doc is not None and name not in doc.containers

    await eventually(freed, timeout=10)
    again = (await api.post("/container/create", json=[item(peer.uuid, name)])).json()
    assert again["data"][0]["code"] == 200


async def test_update_refuses_unknown_names_and_moving_machines(
    api: httpx.AsyncClient, bus: Bus, peer: PeerMachine
) -> None:
    name = unique()
    unknown = (await api.put("/container/updateByName", json=[item(peer.uuid, name)])).json()
    assert unknown["data"][0] == {
        "code": 500,
        "deploymentname": name,
        "message": f'deployments.apps "{name}" not found',
    }
    jobid = (await api.post("/container/create", json=[item(peer.uuid, name)])).json()["data"][0]["jobid"]
    await wait_job(api, jobid, 1)
    other = await ready_peer(api, bus)
    try:
        moved = (await api.put("/container/updateByName", json=[item(other.uuid, name)])).json()
        assert moved["data"][0]["code"] == 500
        assert "cannot move machines" in moved["data"][0]["message"]
        doc = await peer.desired()
        assert doc is not None
        assert doc.containers[name].revision == 1
    finally:
        await other.stop()


async def test_a_create_is_seen_at_once_by_the_same_client(api: httpx.AsyncClient, peer: PeerMachine) -> None:
    """Create, then at once ask for the job: it is there (read through when the view has not
    applied it yet), however quickly the client asks."""
    for _ in range(10):
        name = unique()
        jobid = (await api.post("/container/create", json=[item(peer.uuid, name)])).json()["data"][0]["jobid"]
        info = await job_state(api, jobid)
        assert (info["jobid"], info["deploymentname"]) == (jobid, name)


async def test_a_final_job_means_get_and_info_show_its_effect(
    api: httpx.AsyncClient, peer: PeerMachine
) -> None:
    """Once /task/status answers final, /container/info shows the report that finished the job and
    /container/get the deployment (the views reflect the job's effect before it reads as final)."""
    for _ in range(3):
        name = unique()
        jobid = (await api.post("/container/create", json=[item(peer.uuid, name)])).json()["data"][0]["jobid"]
        await wait_job(api, jobid, 1)
        await peer.report({name: PodPhase.RUNNING})
        await wait_job(api, jobid, 3)
        info = (await api.post("/container/info", params={"name": name})).json()["data"][0]
        assert info["data"]["podinfo"][0]["podstate"] == "Running"
        got = (await api.post("/container/get", params={"name": name})).json()["data"][0]
        assert (got["code"], got["data"]["name"]) == (200, name)
