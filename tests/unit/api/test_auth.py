"""API credentials and audit: the pure rules (tokens, the failure limiter, audit fields) and that
every route that changes anything declares a role that may change."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, APIWebSocketRoute

from tingyu.api import audit, deps
from tingyu.api.auth import FailureLimiter, Principal, bearer, digest, mint, split
from tingyu.api.config import ApiSettings
from tingyu.api.gate import PUBLIC, Actions, Doors
from tingyu.api.main import create_app
from tingyu.api.routes import ROUTERS
from tingyu.common.models.tokens import Role

# Reads the contract offers as POST as well as GET: any role may call them.
POST_READS = {"/tingyu/container/get", "/tingyu/container/info", "/tingyu/container/list"}
CHANGERS = {deps.operator, deps.fleet_operator, deps.admin}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def app() -> FastAPI:
    return create_app(ApiSettings())


def test_a_minted_token_splits_into_its_id_and_secret_and_only_the_digest_is_kept() -> None:
    token_id, secret, token = mint()
    assert split(token) == (token_id, secret)
    assert digest(secret) != secret
    assert len(digest(secret)) == 64
    assert split("ty_short_secret") is None
    assert split(token + "x") is None
    assert mint()[2] != token


def test_bearer_reads_only_the_bearer_scheme() -> None:
    assert bearer("Bearer abc") == "abc"
    assert bearer("bearer   abc ") == "abc"
    assert bearer("Basic abc") == ""
    assert bearer("") == ""


def test_roles_include_the_lower_ones_and_areas_limit_a_principal() -> None:
    assert Role.ADMIN.allows(Role.OPERATOR)
    assert Role.OPERATOR.allows(Role.VIEWER)
    assert not Role.VIEWER.allows(Role.OPERATOR)
    assert not Role.OPERATOR.allows(Role.ADMIN)
    everywhere = Principal("1", "ci", Role.OPERATOR)
    nanjing = Principal("2", "nj", Role.OPERATOR, frozenset({"南京"}))
    assert everywhere.covers("上海")
    assert nanjing.covers("南京")
    assert not nanjing.covers("上海")


def test_the_limiter_blocks_an_address_after_too_many_failures_for_one_window() -> None:
    clock = Clock()
    limiter = FailureLimiter(3, 60.0, clock)
    for _ in range(2):
        limiter.failed("10.0.0.1")
    assert limiter.blocked("10.0.0.1") == 0
    limiter.failed("10.0.0.1")
    assert limiter.blocked("10.0.0.1") == pytest.approx(60.0)
    assert limiter.blocked("10.0.0.2") == 0
    assert limiter.first_refusal("10.0.0.1")
    assert not limiter.first_refusal("10.0.0.1")
    clock.now += 61
    assert limiter.blocked("10.0.0.1") == 0


def test_failures_older_than_the_window_do_not_count() -> None:
    clock = Clock()
    limiter = FailureLimiter(3, 60.0, clock)
    for _ in range(5):
        limiter.failed("10.0.0.1")
        clock.now += 31  # never three within 60 s
    assert limiter.blocked("10.0.0.1") == 0


def test_the_limiter_forgets_the_least_recent_addresses_first() -> None:
    limiter = FailureLimiter(1, 60.0, Clock(), max_clients=2)
    for address in ("a", "b", "c"):
        limiter.failed(address)
    assert limiter.blocked("a") == 0
    assert limiter.blocked("b")
    assert limiter.blocked("c")


def test_public_paths_are_exactly_the_documented_ones() -> None:
    doors = Doors.of("/tingyu", ("/tingyu/docs", "/tingyu/openapi.json"))
    for path in (
        "/tingyu/healthz",
        "/tingyu/readyz",
        "/tingyu/node/enroll",
        "/tingyu/console",
        "/tingyu/console/app.js",
    ):
        assert doors.public(path), path
    for path in (
        "/tingyu/node/list",
        "/tingyu/consoles",
        "/tingyu/healthz/x",
        "/tingyu/token/list",
        "/healthz",
    ):
        assert not doors.public(path), path


def test_actions_are_named_after_the_route() -> None:
    assert audit.action_of("/tingyu/container/updateByName", "/tingyu") == "container.updateByName"
    assert audit.action_of("/tingyu/file/content/{job_id}", "/tingyu") == "file.content"
    assert audit.audited("POST", "container.create", 200)
    assert audit.audited("GET", "file.content", 200)
    assert audit.audited("GET", "node.list", 401)
    assert not audit.audited("GET", "node.list", 200)


def test_the_audit_names_targets_machines_and_jobs() -> None:
    body = [{"uuid": "tingyu-1", "deploymentname": "web"}, {"uuid": "tingyu-2", "deploymentname": "db"}]
    targets, machines = audit.named({"name": "a,b"}, {}, body)
    assert targets == ["a", "b", "web", "db"]
    assert machines == ["tingyu-1", "tingyu-2"]
    code, jobs = audit.outcome(
        200, {"msg": "success", "code": 200, "data": [{"jobid": "j1"}, {"jobid": "j2"}]}
    )
    assert (code, jobs) == ("200", ["j1", "j2"])
    assert audit.outcome(200, {"msg": "x", "code": 500, "error": "e", "tycode": "TY0050"})[0] == "TY0050"
    assert audit.outcome(403, {"msg": "x", "code": "TY0071"}) == ("TY0071", [])
    many, _ = audit.named({"name": ",".join(f"n{i}" for i in range(150))}, {}, None)
    assert len(many) == audit.MAX_LISTED + 1
    assert many[-1] == "+50 more"


def test_actions_are_found_by_path_before_routing() -> None:
    actions = Actions.of("/tingyu", ROUTERS)
    assert actions("/tingyu/container/create") == "container.create"
    assert actions("/tingyu/file/content/0123abcd") == "file.content"
    assert actions("/tingyu/token/revoke") == "token.revoke"
    assert actions("/tingyu/nothing/here") == "unknown"


def _routes() -> list[APIRoute]:
    """Every route of the API, with its full path."""
    routes = []
    for router in ROUTERS:
        for route in router.routes:
            if isinstance(route, APIRoute):
                routes.append(route)
    return routes


def _calls(dependant: Dependant) -> set[Any]:
    found = {dependant.call}
    for sub in dependant.dependencies:
        found |= _calls(sub)
    return found


def test_every_route_that_changes_declares_a_role_that_may_change() -> None:
    checked = []
    for route in _routes():
        path = f"/tingyu{route.path}"
        if route.methods <= {"GET", "HEAD"} or path in POST_READS or Doors.of("/tingyu").public(path):
            continue
        assert _calls(route.dependant) & CHANGERS, f"{route.methods} {path} declares no changing role"
        checked.append(path)
    assert len(checked) >= 14


def test_file_downloads_need_an_operator_too() -> None:
    for route in _routes():
        if route.path.startswith("/file/"):
            assert deps.operator in _calls(route.dependant), route.path


def test_logs_exec_and_prepull_need_an_operator() -> None:
    remote = {"/container/logs", "/container/exec", "/image/prepull"}
    found = {route.path for route in _routes() if route.path in remote}
    assert found == remote
    for route in _routes():
        if route.path in remote:
            assert deps.operator in _calls(route.dependant), route.path


def test_every_websocket_needs_an_operator() -> None:
    sockets = [route for router in ROUTERS for route in router.routes if isinstance(route, APIWebSocketRoute)]
    assert [route.path for route in sockets] == ["/container/exec"]
    for route in sockets:
        assert deps.session_operator in _calls(route.dependant), route.path


def test_every_route_but_the_public_ones_reads_the_caller() -> None:
    for route in _routes():
        if not Doors.of("/tingyu").public(f"/tingyu{route.path}"):
            assert deps.caller in _calls(route.dependant), route.path


def test_openapi_declares_the_bearer_scheme_on_protected_routes_only(app: FastAPI) -> None:
    spec = app.openapi()
    assert spec["components"]["securitySchemes"]["token"] == {
        "type": "http",
        "scheme": "bearer",
        "description": deps.BEARER.model.description,
    }
    for path, operations in spec["paths"].items():
        for operation in operations.values():
            secured = operation.get("security") == [{"token": []}]
            assert secured == (path.removeprefix("/tingyu") not in PUBLIC), path
