"""File fetch end to end: HTTP API -> deployer -> agent -> Docker archive API -> object store -> HTTP."""

from __future__ import annotations

import contextlib
import hashlib
import math
import signal
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import docker
import httpx
import pytest
import pytest_asyncio
from nats.js import errors as js_errors

from tests.e2e.test_containers_e2e import body, create, finished
from tests.support import eventually, unique
from tingyu.cli.launcher import Platform
from tingyu.common import subjects, timefmt
from tingyu.common.bus import Bus
from tingyu.common.settings import PlatformSettings

HELLO = b"hello from tingyu\n"


@pytest_asyncio.fixture(scope="module")
async def running(
    api: httpx.AsyncClient, node_uuid: str, busybox_ref: tuple[str, str], docker_client: docker.DockerClient
) -> AsyncIterator[str]:
    """One running busybox container shared by this module's read-only checks."""
    name = unique("file")
    assert (await create(api, body(node_uuid, name, busybox_ref)))["state"] == 3
    yield name
    await finished(
        api, (await api.delete("/container/delete", params={"name": name})).json()["data"][0]["jobid"]
    )


async def start_fetch(api: httpx.AsyncClient, name: str, path: str, **params: Any) -> dict[str, Any]:
    answer: dict[str, Any] = (
        await api.post("/file/downloadfile", params={"name": name, "filepath": path, **params})
    ).json()
    return answer


async def fetch(api: httpx.AsyncClient, name: str, path: str, **params: Any) -> dict[str, Any]:
    """Start a fetch and wait for getResponseByJobId to answer a final state or an error."""
    started = await start_fetch(api, name, path, **params)
    assert started["code"] == 200, started
    jobid = started["data"]["jobid"]

    async def final() -> dict[str, Any] | None:
        answer: dict[str, Any] = (await api.post("/file/getResponseByJobId", params={"jobId": jobid})).json()
        done = answer["code"] != 200 or answer["data"]["state"] in (3, 4)
        return {**answer, "jobid": jobid} if done else None

    return await eventually(final, timeout=60)


async def download(api: httpx.AsyncClient, answer: dict[str, Any]) -> httpx.Response:
    assert answer["code"] == 200, answer
    data = answer["data"]
    assert data["state"] == 3, data
    assert data["url"] == f"/tingyu/file/content/{answer['jobid']}", data
    response = await api.get(api.base_url.join(data["url"]))
    assert response.status_code == 200, response.text
    return response


def in_container(docker_client: docker.DockerClient, name: str, command: str) -> bytes:
    result = docker_client.containers.get(name).exec_run(["/bin/sh", "-c", command])
    assert result.exit_code == 0, result.output
    output: bytes = result.output
    return output


async def test_small_file_round_trip(api: httpx.AsyncClient, running: str) -> None:
    answer = await fetch(api, running, "/data/hello.txt")
    response = await download(api, answer)
    assert response.content == HELLO
    data = answer["data"]
    assert (data["name"], data["size"], data["sha256"]) == (
        "hello.txt",
        len(HELLO),
        hashlib.sha256(HELLO).hexdigest(),
    )
    assert 'filename="hello.txt"' in response.headers["content-disposition"]
    assert response.headers["content-length"] == str(len(HELLO))


async def test_bigger_file_round_trip_matches_the_bytes_in_the_container(
    api: httpx.AsyncClient, running: str, docker_client: docker.DockerClient
) -> None:
    in_container(docker_client, running, "dd if=/dev/urandom of=/data/big.bin bs=65536 count=48 2>/dev/null")
    expected = in_container(docker_client, running, "cat /data/big.bin")
    assert len(expected) == 48 * 65536
    answer = await fetch(api, running, "/data/big.bin")
    response = await download(api, answer)
    assert len(response.content) == len(expected)
    assert hashlib.sha256(response.content).hexdigest() == hashlib.sha256(expected).hexdigest()
    assert answer["data"]["sha256"] == hashlib.sha256(expected).hexdigest()
    assert answer["data"]["size"] == len(expected)


async def test_a_symlink_is_followed_to_its_file(api: httpx.AsyncClient, running: str) -> None:
    answer = await fetch(api, running, "/bin/sh")  # -> /bin/busybox
    response = await download(api, answer)
    assert response.content == Path("/bin/busybox").read_bytes()  # noqa: ASYNC240 (a test, 2 MB)
    assert answer["data"]["name"] == "busybox"


async def test_bad_paths_and_names_are_refused_before_any_job(api: httpx.AsyncClient, running: str) -> None:
    cases = [
        (running, "data/hello.txt", "TY0003"),
        (running, "/data/../data/hello.txt", "TY0003"),
        (running, "/data/hello.txt/", "TY0003"),
        (running, "", "TY0002"),
        ("", "/data/hello.txt", "TY0002"),
        ("Not_A_Name", "/data/hello.txt", "TY0003"),
        (unique("nobody"), "/data/hello.txt", "TY0017"),
    ]
    texts = {"TY0002": "缺少必填参数", "TY0003": "参数值不合法"}
    for name, path, tycode in cases:
        answer = await start_fetch(api, name, path)
        assert (answer["code"], answer["tycode"]) == (500, tycode), (name, path, answer)
        # msg in the contract's language, the English reason as `error`
        assert answer["msg"] == texts.get(tycode, f"容器不存在: {name}"), answer
        assert answer["error"]
        assert "data" not in answer


async def failure(api: httpx.AsyncClient, name: str, path: str, **params: Any) -> dict[str, Any]:
    answer = await fetch(api, name, path, **params)
    assert answer["code"] == 500, answer
    return answer


async def test_directory_missing_file_and_size_limit_fail_the_job_with_a_reason(
    api: httpx.AsyncClient, running: str
) -> None:
    directory = await failure(api, running, "/data")
    assert (directory["tycode"], directory["msg"]) == ("TY0050", "文件获取失败")
    assert directory["error"] == "/data is a directory, not a file"
    missing = await failure(api, running, "/data/nope.txt")
    assert missing["tycode"] == "TY0050"
    assert "no such file" in missing["error"]
    too_big = await failure(api, running, "/bin/busybox", maxbytes=1000)
    assert too_big["tycode"] == "TY0052"
    assert "over the limit of 1000 bytes" in too_big["error"]
    status = (await api.get("/task/status", params={"jobid": too_big["jobid"]})).json()["info"][0]
    assert status["state"] == 4


async def test_a_stopped_container_is_refused(
    api: httpx.AsyncClient, node_uuid: str, busybox_ref: tuple[str, str]
) -> None:
    name = unique("file")
    assert (await create(api, body(node_uuid, name, busybox_ref)))["state"] == 3
    try:
        stop = (await api.post("/container/stop", params={"name": name})).json()
        assert (await finished(api, stop["data"][0]["jobid"]))["state"] == 3
        answer = await failure(api, name, "/data/hello.txt")
        assert answer["tycode"] == "TY0050"
        assert f"container {name} is not running" in answer["error"]
    finally:
        delete = (await api.delete("/container/delete", params={"name": name})).json()
        await finished(api, delete["data"][0]["jobid"])


async def test_unknown_and_expired_jobs(api: httpx.AsyncClient, running: str, bus: Bus) -> None:
    unknown = (await api.post("/file/getResponseByJobId", params={"jobId": "0" * 32})).json()
    assert (unknown["code"], unknown["tycode"]) == (500, "TY0016")
    gone = await api.get(f"/file/content/{'0' * 32}")
    assert gone.status_code == 404
    assert gone.json()["tycode"] == "TY0016"
    answer = await fetch(api, running, "/data/hello.txt")
    assert answer["data"]["state"] == 3
    # What the store's TTL does after 24 hours, done now.
    await (await bus.objects(subjects.FILES)).delete(answer["jobid"])
    expired = (await api.post("/file/getResponseByJobId", params={"jobId": answer["jobid"]})).json()
    assert (expired["code"], expired["tycode"]) == (500, "TY0051")
    content = await api.get(f"/file/content/{answer['jobid']}")
    assert content.status_code == 404
    assert content.json()["tycode"] == "TY0051"


AGENT_LIMIT = 100_000


async def restart_agent(platform: Platform, api: httpx.AsyncClient, node_uuid: str, **env: str) -> None:
    """Restart this machine's agent and wait until the machine is Ready on a beat of the new one (a
    slow start on a busy machine may leave it NotReady for a moment, refusing file fetches)."""
    platform.kill("agent", signal.SIGTERM)
    since = math.floor(time.time()) + 1  # heartbeat times have whole seconds
    platform.start_service("agent", env)

    async def rejoined() -> bool:
        node = (await api.get("/node/get", params={"name": node_uuid})).json()["data"][0]
        beat = timefmt.from_wire(node["heartbeattime"], PlatformSettings().timezone)
        return bool(node["status"] == "Ready" and beat >= since)

    await eventually(rejoined, timeout=60)


@pytest_asyncio.fixture
async def small_file_limit(platform: Platform, api: httpx.AsyncClient, node_uuid: str) -> AsyncIterator[None]:
    """The agent restarted with its own file limit lowered; put back as it was after the test."""
    await restart_agent(platform, api, node_uuid, TINGYU_AGENT_MAX_FILE_BYTES=str(AGENT_LIMIT))
    try:
        yield
    finally:
        await restart_agent(platform, api, node_uuid)


@pytest.mark.usefixtures("small_file_limit")
async def test_agent_file_limit_holds_on_both_sides_and_maxbytes_cannot_raise_it(
    api: httpx.AsyncClient, running: str, docker_client: docker.DockerClient
) -> None:
    in_container(docker_client, running, f"head -c {AGENT_LIMIT} /bin/busybox > /data/exact")
    in_container(docker_client, running, f"head -c {AGENT_LIMIT + 1} /bin/busybox > /data/over")
    exact = await download(api, await fetch(api, running, "/data/exact"))
    assert len(exact.content) == AGENT_LIMIT
    over = await failure(api, running, "/data/over")
    assert over["tycode"] == "TY0052", over
    assert f"over the limit of {AGENT_LIMIT} bytes" in over["error"]
    raised = await failure(api, running, "/data/over", maxbytes=10 * AGENT_LIMIT)
    assert raised["tycode"] == "TY0052", raised
    assert f"over the limit of {AGENT_LIMIT} bytes" in raised["error"]
    lower = await failure(api, running, "/data/exact", maxbytes=AGENT_LIMIT - 1)  # a lower one applies
    assert f"over the limit of {AGENT_LIMIT - 1} bytes" in lower["error"]


AGENT_WAIT_S = 6


@pytest.fixture
def short_agent_wait(platform: Platform) -> Iterator[None]:
    """The deployer restarted to wait only a few seconds for an agent that is away."""
    platform.kill("deployer", signal.SIGTERM)
    platform.start_service("deployer", {"TINGYU_DEPLOYER_FILE_AGENT_WAIT_S": str(AGENT_WAIT_S)})
    try:
        yield
    finally:
        platform.kill("deployer", signal.SIGTERM)
        platform.start_service("deployer")


async def file_job(api: httpx.AsyncClient, jobid: str) -> dict[str, Any]:
    async def final() -> dict[str, Any] | None:
        answer: dict[str, Any] = (await api.post("/file/getResponseByJobId", params={"jobId": jobid})).json()
        done = answer["code"] != 200 or answer["data"]["state"] in (3, 4)
        return {**answer, "jobid": jobid} if done else None

    return await eventually(final, timeout=60)


@pytest.mark.faults
@pytest.mark.usefixtures("short_agent_wait")
async def test_fetch_while_the_agent_is_away_waits_for_it_then_gives_up(
    api: httpx.AsyncClient, running: str, platform: Platform, node_uuid: str
) -> None:
    async def status(wanted: str) -> bool:
        node = (await api.get("/node/get", params={"name": node_uuid})).json()["data"][0]
        return bool(node["status"] == wanted)

    # Away for longer than the wait: accepted while the machine still counts as Ready, then failed.
    platform.kill("agent", signal.SIGKILL)
    try:
        started = await start_fetch(api, running, "/data/hello.txt")
        assert started["code"] == 200, started
        gone = await file_job(api, started["data"]["jobid"])
        assert gone["tycode"] == "TY0050", gone
        assert gone["error"] == f"machine {node_uuid} did not answer within {AGENT_WAIT_S}s", gone
        await eventually(lambda: status("NotReady"), timeout=30)
        refused = await start_fetch(api, running, "/data/hello.txt")
        assert (refused["code"], refused["tycode"]) == (500, "TY0050"), refused
        assert refused["error"] == f"Node is not ready: {node_uuid}", refused
    finally:
        platform.start_service("agent")
    await eventually(lambda: status("Ready"), timeout=30)

    # Back within the wait: the fetch waits for the agent and succeeds.
    platform.kill("agent", signal.SIGKILL)
    try:
        started = await start_fetch(api, running, "/data/hello.txt")
        assert started["code"] == 200, started
    finally:
        platform.start_service("agent")
    response = await download(api, await file_job(api, started["data"]["jobid"]))
    assert response.content == HELLO


HUGE_MIB = 256  # a copy of several seconds, so the deployer dies while the agent is still copying


async def file_state(api: httpx.AsyncClient, jobid: str) -> dict[str, Any]:
    answer: dict[str, Any] = (await api.post("/file/getResponseByJobId", params={"jobId": jobid})).json()
    assert answer["code"] == 200, answer  # never failed, never unknown
    return answer


@pytest.mark.faults
async def test_a_fetch_survives_the_deployer_killed_mid_copy(
    api: httpx.AsyncClient,
    running: str,
    platform: Platform,
    bus: Bus,
    docker_client: docker.DockerClient,
) -> None:
    """docs/files.md: the copy keeps its command with in-progress acks, so a deployer that dies
    mid-copy leaves it to the next one (after the consumer's ack wait), which asks the agent again;
    the job ends succeeded with the file's own bytes, not failed and not stuck in state 2."""
    in_container(
        docker_client,
        running,
        f"dd if=/dev/urandom of=/data/huge.bin bs=1048576 count={HUGE_MIB} 2>/dev/null",
    )
    expected = in_container(docker_client, running, "sha256sum /data/huge.bin").split()[0].decode()
    store = await bus.objects(subjects.FILES)
    started = await start_fetch(api, running, "/data/huge.bin")
    assert started["code"] == 200, started
    jobid = started["data"]["jobid"]
    try:

        async def copying() -> bool:
            return bool((await file_state(api, jobid))["data"]["state"] == 2)

        await eventually(copying, timeout=30, every=0.05)
        platform.kill("deployer", signal.SIGKILL)
        # Killed mid-copy: the agent writes the stored file's meta last, and it is not there yet.
        with pytest.raises(js_errors.NotFoundError):
            await store.get_info(jobid)
        platform.start_service("deployer")

        async def done() -> dict[str, Any] | None:
            answer = await file_state(api, jobid)
            return answer if answer["data"]["state"] == 3 else None

        # The command comes back once the ack wait (30 s, subjects.DEPLOYER_FILES) has passed.
        answer = await eventually(done, timeout=subjects.DEPLOYER_FILES.ack_wait_s + 90)
        assert (answer["data"]["sha256"], answer["data"]["size"]) == (expected, HUGE_MIB * 2**20), answer
        digest = hashlib.sha256()
        async with api.stream("GET", api.base_url.join(answer["data"]["url"])) as response:
            assert response.status_code == 200
            assert response.headers["x-tingyu-sha256"] == expected
            async for chunk in response.aiter_bytes():
                digest.update(chunk)
        assert digest.hexdigest() == expected
    finally:
        if "deployer" not in platform.procs:
            platform.start_service("deployer")
        in_container(docker_client, running, "rm -f /data/huge.bin")
        with contextlib.suppress(js_errors.NotFoundError):
            await store.delete(jobid)
