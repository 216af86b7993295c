"""`/node/list` over HTTP (the app in this process, real nats-server): the full answer is the
contract's list as before, oldest first; `page`, `pageSize`, `area`, `operator` and `status` pick
from it; bad values answer an envelope error."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.support import api_in_process, eventually
from tests.support.factories import facts, node_record
from tingyu.api.envelope import ok
from tingyu.api.schemas.nodes import NodeView, node_fields
from tingyu.api.views import node_order
from tingyu.common import subjects
from tingyu.common.bus import Bus
from tingyu.common.models.nodes import NodeStatus
from tingyu.common.settings import PlatformSettings


@pytest.fixture
async def api(nats_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with api_in_process(nats_url) as client:
        yield client


@pytest.fixture
async def bus(nats_url: str) -> AsyncIterator[Bus]:
    bus = await Bus.connect(PlatformSettings(nats_url=nats_url), "tingyu-tests-node-list")
    yield bus
    await bus.close()


@pytest.fixture
async def fleet(api: httpx.AsyncClient, bus: Bus) -> list[str]:
    """Machines in two areas and two operators, some NotReady, created in a known order (by uuid
    order within one creation time, too); waits until the API lists them all."""
    nodes = bus.store(subjects.NODES)
    uuids = []
    for index in range(12):
        area = "南京" if index % 2 else "苏州"
        operator = "移动" if index % 3 else "联通"
        status = NodeStatus.NOT_READY if index % 4 == 0 else NodeStatus.READY
        record = node_record(facts(area=area, operator=operator), created=1000.0 + index // 2, status=status)
        await nodes.put(record.facts.uuid, record)
        uuids.append(record.facts.uuid)

    async def listed() -> bool:
        data = (await api.get("/node/list")).json()["data"]
        return set(uuids) <= {node["uuid"] for node in data}

    await eventually(listed, timeout=10)
    return uuids


async def expected(bus: Bus) -> list[dict[str, Any]]:
    """The full answer as the API built it before it streamed: every record, sorted, in the envelope."""
    records = sorted(await bus.store(subjects.NODES).values(), key=node_order)
    tz = PlatformSettings().timezone
    body = ok([NodeView(**node_fields(record, tz)) for record in records])
    data: list[dict[str, Any]] = json.loads(body.model_dump_json(exclude_unset=True))["data"]
    return data


async def test_the_full_list_is_unchanged(api: httpx.AsyncClient, bus: Bus, fleet: list[str]) -> None:
    response = await api.get("/node/list")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert (body["msg"], body["code"]) == ("success", 200)
    assert body["data"] == await expected(bus)
    assert [node["uuid"] for node in body["data"] if node["uuid"] in fleet] == sorted(
        fleet, key=lambda uuid: (fleet.index(uuid) // 2, uuid)
    )


async def test_pages_cover_the_list_in_order(api: httpx.AsyncClient, bus: Bus, fleet: list[str]) -> None:
    full = [node["uuid"] for node in await expected(bus)]
    pages = []
    for page in range(1, len(full) // 5 + 2):
        data = (await api.get("/node/list", params={"page": page, "pageSize": 5})).json()["data"]
        assert len(data) <= 5
        pages.extend(node["uuid"] for node in data)
    assert pages == full
    beyond = (await api.get("/node/list", params={"page": len(full) + 1, "pageSize": 5})).json()
    assert (beyond["code"], beyond["data"]) == (200, [])
    first = (await api.get("/node/list", params={"pageSize": 3})).json()["data"]
    assert [node["uuid"] for node in first] == full[:3]


async def test_filters_pick_by_area_operator_and_status(
    api: httpx.AsyncClient, bus: Bus, fleet: list[str]
) -> None:
    full = await expected(bus)
    params = {"area": "南京", "operator": "移动", "status": "Ready"}
    data = (await api.get("/node/list", params=params)).json()["data"]
    want = [
        node["uuid"]
        for node in full
        if (node["area"], node["operator"], node["status"]) == ("南京", "移动", "Ready")
    ]
    assert [node["uuid"] for node in data] == want
    assert set(want) & set(fleet)
    not_ready = (await api.get("/node/list", params={"status": "NotReady", "area": "苏州"})).json()["data"]
    assert {node["status"] for node in not_ready} == {"NotReady"}
    assert {node["uuid"] for node in not_ready} >= {uuid for i, uuid in enumerate(fleet) if i % 4 == 0}
    paged = (await api.get("/node/list", params={"area": "南京", "page": 2, "pageSize": 2})).json()["data"]
    in_area = [node["uuid"] for node in full if node["area"] == "南京"]
    assert [node["uuid"] for node in paged] == in_area[2:4]


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"page": "0"}, "TY0003"),
        ({"page": "x"}, "TY0003"),
        ({"pageSize": "1001"}, "TY0003"),
        ({"pageSize": "-1"}, "TY0003"),
        ({"status": "Up"}, "TY0003"),
        ({"operator": "铁通"}, "TY0032"),
    ],
)
async def test_bad_values_answer_an_envelope_error(
    api: httpx.AsyncClient, params: dict[str, str], code: str
) -> None:
    response = await api.get("/node/list", params=params)
    body = response.json()
    assert body["code"] == code
    assert body["msg"]
    assert "Traceback" not in response.text


async def test_node_get_answers_what_the_response_model_encodes(
    api: httpx.AsyncClient, bus: Bus, fleet: list[str]
) -> None:
    """Machines by uuid and by nodename are answered from the view's entries: what the envelope of
    their `NodeView`s encodes, in the order asked, each once; one unknown name answers TY0015."""
    nodes = bus.store(subjects.NODES)
    records = [await nodes.get(uuid) for uuid in (fleet[1], fleet[0])]
    tz = PlatformSettings().timezone
    want = ok([NodeView(**node_fields(record, tz)) for record in records if record is not None])
    names = f"{fleet[1]},{fleet[0].removeprefix('tingyu-')},{fleet[1]}"
    response = await api.get("/node/get", params={"name": names})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == json.loads(want.model_dump_json(exclude_unset=True))
    assert len(response.json()["data"]) == 2
    unknown = await api.get("/node/get", params={"name": f"{fleet[0]},tingyu-{'0' * 32}"})
    assert unknown.json() == {"msg": "uuid不存在!", "code": "TY0015"}
