"""The contract's own example requests, sent as a client written against it would, answered in its shape.

Each example is sent verbatim (placeholder values like `string` included) and then, where the
example only makes sense with a precondition (a machine, a deployment, a job), with that set up.
"""

from __future__ import annotations

from typing import Any

import docker
import httpx
import pytest

from tests.e2e.test_containers_e2e import create, finished, inspect
from tests.support import FAST_ENV, unique

EXAMPLE_ITEM: dict[str, Any] = {
    "uuid": "string",
    "image": "string",
    "imageversion": "string",
    "deploymentname": "string",
    "env": [{"key": "string", "value": "string"}],
    "volumes": [{"hostPath": "string", "mountPath": "string"}],
    "requestscpu": 0,
    "requestsmemory": 0,
    "limitscpu": 0,
    "limitsmemory": 0,
}
UNKNOWN_UUID = {"msg": "uuid不存在!", "code": "TY0015"}


def example(node_uuid: str, name: str, image: tuple[str, str]) -> dict[str, Any]:
    """The contract's create example with its preconditions met: a real machine, image and volume."""
    return {
        **EXAMPLE_ITEM,
        "uuid": node_uuid,
        "image": image[0],
        "imageversion": image[1],
        "deploymentname": name,
        "env": [{"key": "port", "value": "6555"}],
        "volumes": [{"hostPath": "/tmp", "mountPath": "/storage"}],
    }


@pytest.mark.parametrize(
    ("method", "path"), [("POST", "/container/create"), ("PUT", "/container/updateByName")]
)
async def test_create_and_update_examples_answer_unknown_uuid(
    api: httpx.AsyncClient, method: str, path: str
) -> None:
    verbatim = (await api.request(method, path, json=[EXAMPLE_ITEM])).json()
    # `string` is no absolute path: the request is refused in the contract's error shape, naming it.
    assert (verbatim["msg"], verbatim["code"]) == ("请求格式错误", "TY0001")
    assert "volumes" in verbatim["detail"]
    valid_paths = {**EXAMPLE_ITEM, "volumes": [{"hostPath": "/tmp", "mountPath": "/storage"}]}
    answer = (await api.request(method, path, json=[valid_paths])).json()
    assert answer == UNKNOWN_UUID  # `string` is no machine: refused like an unknown uuid


async def test_update_by_inherit_example_answers_the_operator_error(api: httpx.AsyncClient) -> None:
    body = {"area": "string", "operator": "string", "percent": 0, "image": "string", "imageversion": "string"}
    answer = (await api.put("/container/updateByInherit", json=body)).json()
    assert answer == {"msg": "运营商错误!正确为移动、联通和电信!", "code": "TY0032"}


async def test_inherit_update_example_answers_per_item(api: httpx.AsyncClient) -> None:
    body = {"deploymentnames": "string", "image": "string", "imageversion": "string"}
    answer = (await api.post("/container/inheritUpdate", json=body)).json()
    assert answer == {
        "msg": "success",
        "code": 200,
        "data": [{"code": 500, "deploymentname": "string", "message": "Get Deploymentname Fail"}],
    }


@pytest.mark.parametrize("op", ["start", "stop", "restart"])
async def test_lifecycle_of_unknown_names_is_a_failure(api: httpx.AsyncClient, op: str) -> None:
    name = unique("nobody")
    answer = (await api.post(f"/container/{op}", params={"name": name})).json()
    assert answer["code"] == 500, answer
    assert answer["tycode"] == "TY0017"
    assert answer["data"] == [
        {"code": 500, "deploymentname": name, "message": f'deployments.apps "{name}" not found'}
    ]
    assert name in answer["detail"]


@pytest.mark.parametrize("path", ["/container/get", "/container/info"])
async def test_get_and_info_examples_answer_per_item_not_found(api: httpx.AsyncClient, path: str) -> None:
    answer = (await api.post(path, params={"name": "nginx"})).json()
    assert (answer["msg"], answer["code"]) == ("success", 200)
    assert answer["data"] == [
        {"code": 500, "data": {"name": "nginx"}, "message": 'deployments.apps "nginx" not found'}
    ]


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/node/get", {"name": "25573790700e807cd563ddc659cdd9f9"}),
        ("/node/get", {"name": "string"}),
        ("/container/list", {"uuid": "string"}),
        ("/container/list", {"uuid": "tingyu-73bc6b60935cc7001c9d939109b0dfc0"}),
    ],
)
async def test_unknown_or_malformed_machines_answer_ty0015(
    api: httpx.AsyncClient, path: str, params: dict[str, str]
) -> None:
    answer = (await api.request("GET" if path.startswith("/node") else "POST", path, params=params)).json()
    assert answer == UNKNOWN_UUID


async def test_task_status_example_and_duplicates(api: httpx.AsyncClient) -> None:
    answer = (await api.get("/task/status", params={"jobid": "jobid,jobid"})).json()
    assert (answer["msg"], answer["code"]) == ("success", 200)
    assert answer["info"] == [{"code": 500, "jobid": "jobid", "message": "job jobid not found"}]


async def test_machine_named_by_uuid_or_nodename_everywhere(
    api: httpx.AsyncClient, node_uuid: str, busybox_ref: tuple[str, str], docker_client: docker.DockerClient
) -> None:
    nodename = node_uuid.removeprefix("tingyu-")
    got = (await api.get("/node/get", params={"name": f"{node_uuid},{nodename},{nodename}"})).json()
    assert len(got["data"]) == 1  # one machine, named three times
    machine = got["data"][0]
    assert (machine["uuid"], machine["nodename"], machine["address"]) == (node_uuid, nodename, nodename)
    assert (machine["area"], machine["operator"]) == (
        FAST_ENV["TINGYU_AGENT_AREA"],
        FAST_ENV["TINGYU_AGENT_OPERATOR"],
    )
    assert machine["ip"]

    name = unique("ex")
    job = await create(api, example(nodename, name, busybox_ref))  # created by nodename
    assert job["state"] == 3, job
    assert (job["uuid"], job["deviceid"], job["deploymentname"]) == (nodename, node_uuid, name)
    assert inspect(docker_client, name)["State"]["Running"]
    listed = (await api.post("/container/list", params={"uuid": nodename})).json()
    assert name in [c["name"] for c in listed["data"]]
    got_spec = (await api.post("/container/get", params={"name": name})).json()["data"][0]
    assert got_spec["code"] == 200
    assert {"image", "restart", "name", "volumes", "env", "network"} <= set(got_spec["data"])

    # Partial success of a lifecycle call stays 200 with per-item data, as documented.
    both = (await api.post("/container/restart", params={"name": f"{name},{unique('nobody')}"})).json()
    assert (both["msg"], both["code"]) == ("部分容器重启失败,详见data", 200)
    assert (await finished(api, both["data"][0]["jobid"]))["state"] == 3
    delete = (await api.delete("/container/delete", params={"name": name})).json()["data"][0]
    assert (await finished(api, delete["jobid"]))["state"] == 3


async def test_metering_examples_and_both_spellings(api: httpx.AsyncClient) -> None:
    dates = {"startDate": "2021-05-08 11:24:22", "endDate": "2021-05-11 11:24:22"}
    for path, extra in [
        ("/info/bandWith/getAllNode", {}),
        ("/info/bandWith/getByImage", {"image": "pcdn"}),
        ("/info/bandWith/getByImageVersion", {"imageVersion": "pcdn:v6.1333"}),
        ("/info/bandWith/getByImageVersion", {"image": "pcdn:v6.1333"}),
        ("/info/resourceUse/getByImage", {"image": "pcdn"}),
        ("/info/resourceUse/getByImageVersion", {"imageVersion": "pcdn:v6.1333"}),
        ("/info/resourceUse/getByImageVersion", {"image": "pcdn:v6.1333"}),
    ]:
        answer = (await api.get(path, params={**dates, **extra})).json()
        assert (answer["msg"], answer["code"]) == ("success", 200), (path, extra, answer)
        assert isinstance(answer["info"], list)
    ignored = (await api.get("/info/bandWith/getByImage", params={**dates, "imageVersion": "pcdn:1"})).json()
    assert (ignored["msg"], ignored["code"]) == ("参数值不合法", "TY0003")
    assert "imageVersion" in ignored["detail"]
    missing = (await api.get("/info/bandWith/getAllNode", params={"endDate": dates["endDate"]})).json()
    assert (missing["msg"], missing["code"]) == ("缺少必填参数", "TY0002")
    assert "startDate" in missing["detail"]
