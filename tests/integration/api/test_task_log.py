"""`/task/log`: the lines the platform services logged about a job, read from TY_JOBLOG over HTTP,
and the envelope errors of a job id that is malformed, missing or unknown."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.integration.api.test_containers_api import item, peer, wait_job
from tests.support import eventually, unique
from tests.support.peer import PeerMachine
from tingyu.common.models.containers import PodPhase
from tingyu.common.names import new_job_id

__all__ = ["peer"]  # the fixture, shared with the container tests


async def job_log(api: httpx.AsyncClient, jobid: str) -> dict[str, Any]:
    body: dict[str, Any] = (await api.get("/task/log", params={"jobid": jobid})).json()
    return body


async def test_a_failed_deployer_job_shows_its_lines_from_api_and_deployer(
    api: httpx.AsyncClient, peer: PeerMachine
) -> None:
    name = unique()
    jobid = (await api.post("/container/create", json=[item(peer.uuid, name)])).json()["data"][0]["jobid"]
    await wait_job(api, jobid, 1)
    await peer.report({name: PodPhase.FAILED}, message="image not found: nope")
    await wait_job(api, jobid, 4)

    async def failed_line() -> dict[str, Any] | None:
        body = await job_log(api, jobid)
        said = [line["message"] for line in body["data"]["lines"]]
        return body if any("failed: image not found: nope" in text for text in said) else None

    body = await eventually(failed_line, timeout=20)
    assert (body["msg"], body["code"], body["data"]["jobid"]) == ("success", 200, jobid)
    lines = body["data"]["lines"]
    assert set(lines[0]) == {"time", "service", "level", "message"}
    seen = [(line["service"], line["level"], line["message"]) for line in lines]
    assert ("api", "INFO", f"job {jobid} queued: create {name} on {peer.uuid}") in seen, seen
    assert ("deployer", "INFO", f"job {jobid} dispatched") in seen, seen
    assert ("deployer", "WARNING", f"job {jobid} failed: image not found: nope") in seen, seen
    assert [line["time"] for line in lines] == sorted(line["time"] for line in lines)


@pytest.mark.parametrize(
    ("jobid", "code"),
    [("", "TY0002"), ("a.b", "TY0003"), ("x" * 65, "TY0003"), ("a,b", "TY0003"), ("ty.joblog.>", "TY0003")],
)
async def test_a_bad_jobid_gets_an_envelope_error(api: httpx.AsyncClient, jobid: str, code: str) -> None:
    response = await api.get("/task/log", params={"jobid": jobid})
    body = response.json()
    assert (response.status_code, body["code"]) == (200, code), body
    assert body["msg"]
    assert body["detail"]
    assert "Traceback" not in response.text


async def test_an_unknown_job_is_refused_as_task_status_names_it(api: httpx.AsyncClient) -> None:
    jobid = new_job_id()
    status = (await api.get("/task/status", params={"jobid": jobid})).json()["info"][0]
    body = await job_log(api, jobid)
    assert body["code"] == "TY0016", body
    assert body["detail"] == status["message"] == f"job {jobid} not found"
