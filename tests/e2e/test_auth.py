"""API credentials and the audit against the running platform: roles, areas, revocation, the
failure limit, public routes, and the audit events on stream TY_AUDIT for changes and refusals."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio
from nats.js import api as js_api

from tests.e2e.test_containers_e2e import body, finished
from tests.support import ADMIN_TOKEN, bearer, eventually, unique
from tingyu.cli.launcher import Platform
from tingyu.common import subjects
from tingyu.common.bus import Bus
from tingyu.common.models.audit import AuditEvent

WRONG = "ty_0123456789abcdef_" + "A" * 43


def address() -> str:
    """A client address of one test's own (the API trusts X-Forwarded-For from loopback), so that its
    failed attempts count against no other test."""
    return f"10.{secrets.randbelow(250)}.{secrets.randbelow(250)}.{secrets.randbelow(250) + 1}"


def request_id() -> str:
    return unique("req")


@pytest_asyncio.fixture
async def anonymous(platform: Platform) -> AsyncIterator[httpx.AsyncClient]:
    """A client without a token, from an address of its own."""
    headers = {"X-Forwarded-For": address()}
    async with httpx.AsyncClient(base_url=platform.config.api_url, timeout=30.0, headers=headers) as client:
        yield client


async def make_token(api: httpx.AsyncClient, role: str, areas: tuple[str, ...] = ()) -> tuple[str, str]:
    """(name, secret) of a new token."""
    name = unique(role)
    answer = (await api.post("/token/create", json={"name": name, "role": role, "areas": list(areas)})).json()
    assert answer["code"] == 200, answer
    assert answer["data"]["token"].startswith("ty_")
    return name, answer["data"]["token"]


def as_token(platform: Platform, token: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=platform.config.api_url, timeout=30.0, headers=bearer(token))


async def audit_events(bus: Bus, action: str) -> list[AuditEvent]:
    """Every event of one action, read from the stream."""
    sub = await bus.js.pull_subscribe(
        subjects.audit(action),
        stream=subjects.AUDIT.name,
        config=js_api.ConsumerConfig(
            deliver_policy=js_api.DeliverPolicy.ALL,
            ack_policy=js_api.AckPolicy.NONE,
            mem_storage=True,
            inactive_threshold=10.0,
            filter_subject=subjects.audit(action),
        ),
    )
    events: list[AuditEvent] = []
    try:
        while True:
            try:
                msgs = await sub.fetch(500, timeout=0.5)
            except TimeoutError:
                break
            events.extend(AuditEvent.from_bytes(msg.data) for msg in msgs)
            if msgs[-1].metadata.num_pending == 0:
                break
    finally:
        await sub.unsubscribe()
    return events


async def audited(bus: Bus, action: str, rid: str) -> AuditEvent:
    """The audit event of the request `rid`, once it is on the stream."""

    async def found() -> AuditEvent | None:
        return next((e for e in await audit_events(bus, action) if e.request_id == rid), None)

    return await eventually(found, timeout=15)


def refused(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    answer: dict[str, Any] = response.json()
    assert answer["code"] == code, answer
    assert answer["msg"]
    return answer


async def test_public_routes_answer_without_a_token(anonymous: httpx.AsyncClient) -> None:
    assert (await anonymous.get("/healthz")).json()["code"] == 200
    spec = (await anonymous.get("/openapi.json")).json()
    assert spec["components"]["securitySchemes"]["token"]["scheme"] == "bearer"
    assert (await anonymous.get("/docs")).status_code == 200


@pytest.mark.parametrize(
    ("method", "path", "action"),
    [
        ("GET", "/node/list", "node.list"),
        ("POST", "/container/create", "container.create"),
        ("POST", "/file/downloadfile", "file.downloadfile"),
        ("GET", "/file/content/0123456789abcdef0123456789abcdef", "file.content"),
        ("GET", "/token/list", "token.list"),
        ("GET", "/no/such/path", "unknown"),
    ],
)
async def test_a_call_without_a_token_or_with_a_wrong_one_is_refused_401_and_audited(
    anonymous: httpx.AsyncClient, bus: Bus, method: str, path: str, action: str
) -> None:
    rid = request_id()
    answer = await anonymous.request(method, path, json=[], headers={"X-Request-Id": rid})
    assert answer.headers["WWW-Authenticate"] == "Bearer"
    assert answer.headers["X-Request-Id"] == rid
    assert "Authorization" in refused(answer, 401, "TY0070")["detail"]
    event = await audited(bus, action, rid)
    assert (event.status, event.code, event.actor, event.method) == (401, "TY0070", "", method)
    assert event.client == anonymous.headers["X-Forwarded-For"]

    rid = request_id()
    answer = await anonymous.request(
        method, path, headers={"Authorization": f"Bearer {WRONG}", "X-Request-Id": rid}
    )
    assert "unknown or revoked" in refused(answer, 401, "TY0070")["detail"]
    assert (await audited(bus, action, rid)).status == 401


async def test_a_viewer_reads_and_cannot_change(platform: Platform, api: httpx.AsyncClient, bus: Bus) -> None:
    name, token = await make_token(api, "viewer")
    async with as_token(platform, token) as viewer:
        assert (await viewer.get("/node/list")).json()["code"] == 200
        assert (await viewer.post("/container/get", params={"name": "nothere"})).json()["code"] == 200
        rid = request_id()
        answer = await viewer.post("/container/create", json=[], headers={"X-Request-Id": rid})
        assert "viewer" in refused(answer, 403, "TY0071")["detail"]
        refused(await viewer.delete("/container/delete", params={"name": "x"}), 403, "TY0071")
        refused(
            await viewer.post("/file/downloadfile", params={"name": "x", "filepath": "/a"}), 403, "TY0071"
        )
    event = await audited(bus, "container.create", rid)
    assert (event.actor, event.role, event.status, event.code) == (name, "viewer", 403, "TY0071")


async def test_an_operator_changes_but_cannot_manage_tokens_or_read_the_audit(
    platform: Platform, api: httpx.AsyncClient, bus: Bus
) -> None:
    name, token = await make_token(api, "operator")
    async with as_token(platform, token) as operator:
        rid = request_id()
        answer = await operator.post(
            "/token/create", json={"name": unique("x"), "role": "admin"}, headers={"X-Request-Id": rid}
        )
        refused(answer, 403, "TY0071")
        refused(await operator.get("/token/list"), 403, "TY0071")
        refused(await operator.get("/audit"), 403, "TY0071")
        # Past the role check: the request itself is judged (an empty body is refused for what it is).
        assert (await operator.post("/container/create", json=[])).json()["code"] == "TY0002"
    event = await audited(bus, "token.create", rid)
    assert (event.actor, event.role, event.status) == (name, "operator", 403)
    listed = (await api.get("/token/list")).json()["data"]
    mine = next(t for t in listed if t["name"] == name)
    assert mine["role"] == "operator"
    assert not mine["revoked"]
    assert "token" not in mine
    assert "digest" not in mine


async def test_an_area_token_acts_only_on_machines_of_its_areas(
    platform: Platform, api: httpx.AsyncClient, bus: Bus, node_uuid: str, busybox_ref: tuple[str, str]
) -> None:
    """The session's machine is in 南京: a 南京 operator runs a container there, fetches a file out of
    it and deletes it; a 上海 operator is refused on it, per item or as 403."""
    nanjing_name, nanjing = await make_token(api, "operator", ("南京",))
    _, shanghai = await make_token(api, "operator", ("上海",))
    name = unique()
    async with as_token(platform, nanjing) as ours, as_token(platform, shanghai) as theirs:
        item = (await theirs.post("/container/create", json=[body(node_uuid, name, busybox_ref)])).json()[
            "data"
        ][0]
        assert item["code"] == 500
        assert "南京" in item["message"]

        rid = request_id()
        answer = await ours.post(
            "/container/create", json=[body(node_uuid, name, busybox_ref)], headers={"X-Request-Id": rid}
        )
        created = answer.json()["data"][0]
        assert created["code"] == 200, created
        assert (await finished(api, created["jobid"]))["state"] == 3
        event = await audited(bus, "container.create", rid)
        assert (event.actor, event.role, event.areas, event.status, event.code) == (
            nanjing_name,
            "operator",
            ["南京"],
            200,
            "200",
        )
        assert event.machines == [node_uuid]
        assert name in event.targets
        assert event.job_ids == [created["jobid"]]

        stopped = (await theirs.post("/container/stop", params={"name": name})).json()["data"][0]
        assert stopped["code"] == 500
        assert "南京" in stopped["message"]
        rollout = {
            "area": "南京",
            "operator": "移动",
            "image": busybox_ref[0],
            "imageversion": "1",
            "percent": 10,
        }
        refused(await theirs.put("/container/updateByInherit", json=rollout), 403, "TY0071")
        fetch = {"name": name, "filepath": "/data/hello.txt"}
        refused(await theirs.post("/file/downloadfile", params=fetch), 403, "TY0071")
        refused(
            await theirs.post("/image/uploadImage", params={"image_name": "x", "version": "1"}), 403, "TY0071"
        )

        job = (await ours.post("/file/downloadfile", params=fetch)).json()["data"]["jobid"]

        async def url() -> str | None:
            state = (await ours.post("/file/getResponseByJobId", params={"jobId": job})).json()["data"]
            return state.get("url")

        path = (await eventually(url, timeout=60)).removeprefix("/tingyu")
        rid = request_id()
        refused(await theirs.get(path), 403, "TY0071")
        assert (await ours.get(path, headers={"X-Request-Id": rid})).content == b"hello from tingyu\n"
        downloaded = await audited(bus, "file.content", rid)
        assert (downloaded.actor, downloaded.status, downloaded.targets) == (nanjing_name, 200, [job])

        rid = request_id()
        deleted = (
            await ours.delete("/container/delete", params={"name": name}, headers={"X-Request-Id": rid})
        ).json()
        assert deleted["data"][0]["code"] == 200
        assert (await finished(api, deleted["data"][0]["jobid"]))["state"] == 3
        assert (await audited(bus, "container.delete", rid)).job_ids == [deleted["data"][0]["jobid"]]

    page = (await api.get("/audit", params={"actor": nanjing_name, "action": "container"})).json()["data"]
    assert [e["action"] for e in page["events"]] == ["container.create", "container.delete"]
    assert page["next"] > 0
    after = (await api.get("/audit", params={"actor": nanjing_name, "after": page["next"]})).json()["data"]
    assert all(e["action"] != "container.create" for e in after["events"])


async def test_a_revoked_token_is_refused_on_the_very_next_call(
    platform: Platform, api: httpx.AsyncClient, bus: Bus
) -> None:
    name, token = await make_token(api, "operator")
    async with as_token(platform, token) as operator:
        assert (await operator.get("/node/list")).json()["code"] == 200  # the record is now cached
        rid = request_id()
        revoked = (
            await api.delete("/token/revoke", params={"name": name}, headers={"X-Request-Id": rid})
        ).json()
        assert revoked["data"]["revoked"], revoked
        refused(await operator.get("/node/list"), 401, "TY0070")
    event = await audited(bus, "token.revoke", rid)
    assert (event.actor, event.token_id, event.targets) == ("admin", "bootstrap", [name])
    refused(await api.delete("/token/revoke", params={"name": name}), 200, "TY0073")
    refused(await api.post("/token/create", json={"name": "admin", "role": "viewer"}), 200, "TY0074")


async def test_too_many_wrong_tokens_from_one_address_are_refused_429_without_checking(
    platform: Platform, bus: Bus
) -> None:
    flooder, bystander = address(), address()
    async with httpx.AsyncClient(base_url=platform.config.api_url, timeout=30.0) as client:
        for _ in range(20):  # TINGYU_API_AUTH_MAX_FAILURES
            wrong = {"Authorization": f"Bearer {WRONG}", "X-Forwarded-For": flooder}
            refused(await client.get("/node/list", headers=wrong), 401, "TY0070")
        rid = request_id()
        good = {**bearer(), "X-Forwarded-For": flooder, "X-Request-Id": rid}
        answer = await client.get("/node/list", headers=good)
        refused(answer, 429, "TY0072")
        assert 0 < int(answer.headers["Retry-After"]) <= 60
        refused(await client.get("/node/list", headers=good), 429, "TY0072")
        assert (await client.get("/node/list", headers={**bearer(), "X-Forwarded-For": bystander})).json()[
            "code"
        ] == 200
        assert (await client.get("/healthz", headers={"X-Forwarded-For": flooder})).json()["code"] == 200
    event = await audited(bus, "node.list", rid)
    assert (event.status, event.code, event.client) == (429, "TY0072", flooder)
    floods = [e for e in await audit_events(bus, "node.list") if e.client == flooder and e.status == 429]
    assert len(floods) == 1  # a flood of refusals is audited once per block


def cli(platform: Platform, *args: str, token: str = ADMIN_TOKEN) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TINGYU_TOKEN": token}
    argv = [sys.executable, "-m", "tingyu.cli.main", *args[:1], "--api", platform.config.api_url, *args[1:]]
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60, check=False)


async def test_the_cli_creates_lists_and_revokes_tokens_and_tails_the_audit(platform: Platform) -> None:
    name = unique("cli")
    made = cli(platform, "token", "create", "--role", "viewer", "--name", name, "--areas", "南京,上海")
    assert made.returncode == 0, made.stderr
    secret = made.stdout.strip()
    async with as_token(platform, secret) as viewer:
        assert (await viewer.get("/node/list")).json()["code"] == 200
        listed = cli(platform, "token", "ls")
        assert name in listed.stdout
        assert "南京,上海" in listed.stdout
        assert secret not in listed.stdout
        assert cli(platform, "token", "ls", token=secret).returncode == 1  # a viewer may not
        assert cli(platform, "token", "revoke", name).returncode == 0
        refused(await viewer.get("/node/list"), 401, "TY0070")
    tail = cli(platform, "audit", "tail", "--action", "token.revoke", "--actor", "admin")
    assert tail.returncode == 0, tail.stderr
    assert "token.revoke" in tail.stdout
    assert name in tail.stdout


async def test_steering_a_rollout_needs_an_operator_of_its_area(
    platform: Platform, api: httpx.AsyncClient, bus: Bus
) -> None:
    """Reading a rollout needs any token; pause/resume/abort need the operator role and the rollout's
    area, judged before the rollout is looked up, and each refusal is audited."""
    _, viewer_token = await make_token(api, "viewer")
    _, nanjing_token = await make_token(api, "operator", ("南京",))
    shanghai_name, shanghai_token = await make_token(api, "operator", ("上海",))
    target = {"area": "南京", "operator": "移动", "image": unique("img")}
    async with (
        as_token(platform, viewer_token) as viewer,
        as_token(platform, nanjing_token) as nanjing,
        as_token(platform, shanghai_token) as shanghai,
    ):
        assert (await viewer.get("/container/rollout", params=target)).json()["code"] == "TY0033"
        for action in ("pause", "resume", "abort"):
            refused(await viewer.put(f"/container/rollout/{action}", params=target), 403, "TY0071")
            answer = refused(await shanghai.put(f"/container/rollout/{action}", params=target), 403, "TY0071")
            assert "南京" in answer["detail"]
            # Role and area allow it: the rollout itself is judged (none was started for that image).
            assert (await nanjing.put(f"/container/rollout/{action}", params=target)).json()[
                "code"
            ] == "TY0033"
        rid = request_id()
        await shanghai.put("/container/rollout/abort", params=target, headers={"X-Request-Id": rid})
    event = await audited(bus, "container.rollout.abort", rid)
    assert (event.actor, event.status, event.code) == (shanghai_name, 403, "TY0071")
