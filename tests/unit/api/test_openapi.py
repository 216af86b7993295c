"""The API's OpenAPI shows every answer in the contract's envelope, and the typed views answer the
same bytes the contract's clients read (keys, order, values, absent keys, `null`s)."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from pydantic import TypeAdapter

from tests.support import factories
from tingyu.api import texts
from tingyu.api.config import ApiSettings
from tingyu.api.envelope import ok, ok_info
from tingyu.api.main import create_app
from tingyu.api.routes import ROUTERS
from tingyu.api.schemas.containers import ContainerView, DeploymentName, Found, PodView
from tingyu.api.schemas.files import FileState
from tingyu.api.schemas.metering import BandwidthAnswer, ResourceAnswer, bandwidth_body, resources_body
from tingyu.api.schemas.rollouts import RolloutAccepted
from tingyu.api.schemas.tasks import TaskState
from tingyu.api.services import containers, tasks
from tingyu.common.errors import FileFetchError, TingyuError
from tingyu.common.models.containers import (
    ContainerOp,
    ContainerReport,
    DesiredContainer,
    FailedAttempt,
    NodeReport,
    PodPhase,
)
from tingyu.common.models.jobs import Job, JobKind, JobState
from tingyu.common.models.metering import MeteringColumns, MeteringReply, MeteringSummary

TZ = "Asia/Shanghai"
# Interfaces that are not contract JSON: the file bytes, liveness, the docs themselves and the
# registry's token service (Docker's token specification fixes its answer).
NOT_ENVELOPES = {
    "/tingyu/file/content/{job_id}",
    "/tingyu/healthz",
    "/tingyu/docs",
    "/tingyu/openapi.json",
    "/tingyu/registry/token",
}


@pytest.fixture(scope="module")
def app() -> FastAPI:
    return create_app(ApiSettings())  # building the app and its OpenAPI needs no NATS


@pytest.fixture(scope="module")
def spec(app: FastAPI) -> dict[str, Any]:
    return app.openapi()


def _resolve(spec: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
    return schema


def test_every_route_declares_the_contract_envelope(spec: dict[str, Any]) -> None:
    checked = []
    for path, operations in spec["paths"].items():
        if path in NOT_ENVELOPES:
            continue
        assert path.startswith("/tingyu/"), path
        for method, operation in operations.items():
            where = f"{method.upper()} {path}"
            answer = operation["responses"].get("200", {}).get("content", {}).get("application/json")
            assert answer, f"{where} declares no 200 JSON response"
            assert answer.get("schema"), f"{where} declares no 200 response schema"
            schema = _resolve(spec, answer["schema"])
            fields = set(schema.get("properties", {}))
            body = {"data", "info"} & fields
            assert {"msg", "code"} <= fields, f"{where} answers {sorted(fields)}"
            assert len(body) == 1, f"{where} answers {sorted(fields)}"
            assert {"msg", "code", *body} <= set(schema.get("required", [])), (
                f"{where}: envelope keys optional"
            )
            checked.append(where)
    assert len(checked) >= 28  # every contract interface (get, info and list answer GET and POST)


def test_operation_ids_are_unique(spec: dict[str, Any]) -> None:
    ids = [op["operationId"] for ops in spec["paths"].values() for op in ops.values()]
    assert len(ids) == len(set(ids))


def _routes() -> dict[str, APIRoute]:
    """Every route of the API by its full path (one per path: get, info and list share theirs)."""
    return {
        "/tingyu" + route.path: route
        for router in ROUTERS
        for route in router.routes
        if isinstance(route, APIRoute)
    }


def test_every_json_route_leaves_unset_keys_out() -> None:
    routes = [route for path, route in _routes().items() if path not in NOT_ENVELOPES]
    assert len(routes) >= 25
    for route in routes:
        assert route.response_model is not None, route.path
        assert route.response_model_exclude_unset, route.path


# --- the bytes -------------------------------------------------------------------------------------


def _answer(path: str, value: Any) -> bytes:
    """What the route at `path` sends for `value` (FastAPI's own path: validate, dump to JSON)."""
    route = _routes()[path]
    adapter: TypeAdapter[Any] = TypeAdapter(route.response_model)
    return adapter.dump_json(
        adapter.validate_python(value), exclude_unset=route.response_model_exclude_unset, by_alias=True
    )


def _as_before(body: dict[str, Any]) -> bytes:
    """How the routes sent their plain dicts before they had views."""
    return TypeAdapter(dict[str, Any]).dump_json(body)


def test_item_results_carry_a_jobid_only_once_accepted() -> None:
    results = [containers.accepted("a1", "f" * 32), containers.refused("b1", "Node is not ready")]
    failure = "部分容器启动失败,详见data"
    expected = {
        "msg": failure,
        "code": 200,
        "data": [
            {"code": 200, "deploymentname": "a1", "message": "success", "jobid": "f" * 32},
            {"code": 500, "deploymentname": "b1", "message": "Node is not ready"},
        ],
    }
    assert _answer("/tingyu/container/start", containers.verdict(results, ContainerOp.START)) == _as_before(
        expected
    )


def test_a_lifecycle_call_where_no_name_was_accepted_answers_500_with_the_reasons() -> None:
    gone = 'deployments.apps "b1" not found'
    results = [containers.refused("b1", gone)]
    expected = {
        "msg": "容器停止失败!",
        "code": 500,
        "tycode": "TY0017",
        "detail": f"b1: {gone}",
        "data": [{"code": 500, "deploymentname": "b1", "message": gone}],
    }
    answer = containers.verdict(results, ContainerOp.STOP)
    assert _answer("/tingyu/container/stop", answer) == _as_before(expected)
    not_ready = containers.verdict([containers.refused("c1", "Node is not ready")], ContainerOp.RESTART)
    assert (not_ready.msg, not_ready.code, not_ready.tycode) == ("容器重启失败!", 500, "TY0019")
    outside = texts.outside_areas("tingyu-" + "1" * 32, "南京", frozenset({"上海"}))
    forbidden = containers.verdict([containers.refused("d1", outside)], ContainerOp.START)
    assert (forbidden.msg, forbidden.code, forbidden.tycode) == ("容器启动失败!", 500, "TY0071")


def _desired(name: str) -> DesiredContainer:
    return DesiredContainer(
        name=name,
        spec=factories.spec(requests_cpu=0.5, limits_memory=64, env=[{"key": "k", "value": "值"}]),
        revision=3,
        job_id="a" * 32,
        created_at=1_600_000_000.0,
    )


def test_container_reads_keep_the_contract_shapes() -> None:
    desired = _desired("web1")
    uuid = "tingyu-" + "1" * 32
    spec_view = {
        "image": desired.spec.image_ref,
        "restart": "Always",
        "name": "web1",
        "volumes": [],
        "env": [{"key": "k", "value": "值"}],
        "network": "host",
        "uuid": uuid,
        "imagename": desired.spec.image,
        "imageversion": "1",
        "requestscpu": 0.5,
        "requestsmemory": 0,
        "limitscpu": 0.0,
        "limitsmemory": 64,
        "desiredstate": "running",
    }
    missing = {"code": 500, "data": {"name": "gone"}, "message": 'deployments.apps "gone" not found'}
    found = Found[ContainerView](code=200, data=containers.container_view(desired, uuid), message="success")
    gone = Found[ContainerView](
        code=500, data=DeploymentName(name="gone"), message='deployments.apps "gone" not found'
    )
    expected = {
        "msg": "success",
        "code": 200,
        "data": [{"code": 200, "data": spec_view, "message": "success"}, missing],
    }
    assert _answer("/tingyu/container/get", ok([found, gone])) == _as_before(expected)

    seen = ContainerReport(name="web1", revision=3, job_id="a" * 32, phase=PodPhase.FAILED, podname="web1-3")
    observed = NodeReport(node_uuid=uuid, containers={"web1": seen}, reported_at=0.0)
    pending = {"createtime": "2020-09-13 20:26:40", "podinfo": [{"podname": "web1-3", "podstate": "Pending"}]}
    failed = seen.model_copy(update={"message": "exit 1"})
    listing = [
        containers.listing(containers.container_view(desired, uuid), containers.pod_view(desired, None, TZ)),
    ]
    expected = {"msg": "success", "code": 200, "data": [{**spec_view, **pending, "deploymentname": "web1"}]}
    assert _answer("/tingyu/container/list", ok(listing)) == _as_before(expected)

    pods = [
        containers.pod_view(desired, observed, TZ),
        containers.pod_view(desired, observed.model_copy(update={"containers": {"web1": failed}}), TZ),
    ]
    expected_pods = [
        {"createtime": pending["createtime"], "podinfo": [{"podname": "web1-3", "podstate": "Failed"}]},
        {
            "createtime": pending["createtime"],
            "podinfo": [{"podname": "web1-3", "podstate": "Failed", "message": "exit 1"}],
        },
    ]
    answers = [Found[PodView](code=200, data=pod, message="success") for pod in pods]
    expected = {
        "msg": "success",
        "code": 200,
        "data": [
            {"code": 200, "data": {**pod, "deploymentname": "web1"}, "message": "success"}
            for pod in expected_pods
        ],
    }
    assert _answer("/tingyu/container/info", ok(answers)) == _as_before(expected)


def test_a_rolled_back_change_shows_the_spec_that_runs_and_the_failed_attempt() -> None:
    desired = _desired("web1")
    tried = desired.spec.model_copy(update={"imageversion": "2", "image_ref": f"{desired.spec.image}:2"})
    in_flight = desired.model_copy(update={"spec": tried, "fallback": desired.spec})
    assert containers.container_view(in_flight, "u").imageversion == "1"  # it runs 1 until 2 succeeds
    attempt = FailedAttempt(
        job_id="b" * 32,
        image=tried.image,
        imageversion="2",
        image_ref=tried.image_ref,
        reason="cannot pull image: manifest unknown",
        at=1_600_000_001.0,
    )
    rolled_back = desired.model_copy(update={"failed": attempt})
    pod = containers.pod_view(rolled_back, None, TZ)
    expected = {
        "msg": "success",
        "code": 200,
        "data": [
            {
                "code": 200,
                "data": {
                    "createtime": "2020-09-13 20:26:40",
                    "podinfo": [{"podname": "web1-3", "podstate": "Pending"}],
                    "deploymentname": "web1",
                    "failedupdate": {
                        "jobid": "b" * 32,
                        "imagename": tried.image,
                        "imageversion": "2",
                        "image": tried.image_ref,
                        "message": "cannot pull image: manifest unknown",
                        "time": "2020-09-13 20:26:41",
                    },
                },
                "message": "success",
            }
        ],
    }
    answer = ok([Found[PodView](code=200, data=pod, message="success")])
    assert _answer("/tingyu/container/info", answer) == _as_before(expected)
    listing = containers.listing(containers.container_view(rolled_back, "u"), pod)
    assert list(listing.model_dump(exclude_unset=True))[-2:] == ["deploymentname", "failedupdate"]
    plain = containers.listing(
        containers.container_view(desired, "u"), containers.pod_view(desired, None, TZ)
    )
    assert "failedupdate" not in plain.model_dump(exclude_unset=True)


def test_task_states_keep_extensions_and_leave_out_what_is_unknown() -> None:
    job = Job(
        job_id="c" * 32,
        kind=JobKind.FILE,
        op="download",
        state=JobState.SUCCEEDED,
        message="done",
        deploymentname="web1",
        node_uuid="tingyu-" + "1" * 32,
        nodename="1" * 32,
        created_at=1_600_000_000.0,
        updated_at=1_600_000_001.0,
    )
    with_result = job.model_copy(update={"result": {"size": 3, "sha256": "ab"}})
    states = [
        tasks.task_state(job, TZ),
        tasks.task_state(with_result, TZ),
        TaskState(code=500, jobid="nope", message="job nope not found"),
    ]
    view = {
        "code": 200,
        "jobid": "c" * 32,
        "deploymentname": "web1",
        "state": 3,
        "uuid": "1" * 32,
        "deviceid": "tingyu-" + "1" * 32,
        "kind": "file",
        "op": "download",
        "message": "done",
        "createtime": "2020-09-13 20:26:40",
        "updatetime": "2020-09-13 20:26:41",
    }
    expected = {
        "msg": "success",
        "code": 200,
        "info": [
            view,
            {**view, "result": {"size": 3, "sha256": "ab"}},
            {"code": 500, "jobid": "nope", "message": "job nope not found"},
        ],
    }
    assert _answer("/tingyu/task/status", ok_info(states)) == _as_before(expected)


def test_null_stays_null_where_the_contract_shows_it() -> None:
    accepted = RolloutAccepted(msg="success", code=200, data=None, jobid="d" * 32)
    expected: dict[str, Any] = {"msg": "success", "code": 200, "data": None, "jobid": "d" * 32}
    assert _answer("/tingyu/container/updateByInherit", accepted) == _as_before(expected)

    state = FileState(name="a.txt", size=None, sha256=None, state=1, url=None)
    expected = {
        "msg": "文件准备中",
        "code": 200,
        "data": {"name": "a.txt", "size": None, "sha256": None, "state": 1, "url": None},
    }
    assert _answer("/tingyu/file/getResponseByJobId", ok(state, "文件准备中")) == _as_before(expected)


@pytest.mark.parametrize(
    ("render", "model"), [(bandwidth_body, BandwidthAnswer), (resources_body, ResourceAnswer)]
)
def test_metering_fast_answers_are_what_openapi_declares(render: Any, model: Any) -> None:
    reply = MeteringReply(
        columns=MeteringColumns(first=1_600_000_200, a=[1.5, 0.0], b=[2.0, 3.25]),
        summary=MeteringSummary(buckets=2, up_bytes=10.0, peak_cpu_cores=1.5),
    )
    body = render(reply, TZ)
    declared = model.model_validate(body)
    assert declared.model_dump() == body  # same keys, same order, same values
    assert list(body) == ["msg", "code", "info", "summary"]
    assert body["info"][0]["time"] == "2020-09-13 20:30:00"


@pytest.mark.parametrize(
    ("error", "msg", "detail"),
    [
        (texts.required("image_name"), "缺少必填参数", "image_name is required"),
        (texts.over_limit(1000, "files"), "参数值不合法", "at most 1000 files per request"),
        (
            texts.required("name", "comma-separated deployment names"),
            "缺少必填参数",
            "name is required (comma-separated deployment names)",
        ),
        (texts.over_limit(1000, "job ids"), "参数值不合法", "at most 1000 job ids per request"),
        (texts.bad_range("startDate 2 is after endDate 1"), "时间范围错误", "startDate 2 is after endDate 1"),
        (texts.version_exists("pcdn", "v1"), "镜像版本已存在!", "version pcdn:v1 is already in the catalog"),
        (
            texts.version_not_found("pcdn", "v9"),
            "镜像版本不存在!",
            "image pcdn has no version 'v9' in the catalog",
        ),
        (texts.image_not_found("pcdn"), "镜像不存在!", "no image 'pcdn' in the catalog"),
        (
            texts.not_a_name("version", "v 1", "a valid tag"),
            "参数值不合法",
            "version 'v 1' is not a valid tag",
        ),
        (
            texts.too_long("detail", 4096, "TINGYU_API_MAX_DETAIL_BYTES"),
            "参数值不合法",
            "detail is longer than 4096 bytes (TINGYU_API_MAX_DETAIL_BYTES)",
        ),
        (
            texts.upload_too_large(10),
            "文件过大",
            "the upload is over 10 bytes (TINGYU_API_MAX_UPLOAD_BYTES)",
        ),
        (texts.upload_empty(), "缺少必填参数", "file is required (the upload is empty)"),
        (
            texts.file_failed(FileFetchError, "/data is a directory, not a file"),
            "文件获取失败",
            "/data is a directory, not a file",
        ),
        (texts.deployment_gone("web1"), "容器不存在: web1", 'deployments.apps "web1" not found'),
        (
            texts.file_node_not_ready("web1", "u"),
            "文件获取失败: 容器 web1 所在机器未就绪",
            "Node is not ready: u",
        ),
        (texts.file_not_finished("j", 1), "文件尚未就绪: j", "job j has not finished (state 1)"),
    ],
)
def test_refusal_texts_keep_their_words(error: TingyuError, msg: str, detail: str | None) -> None:
    assert (error.msg, error.detail) == (msg, detail)
