"""Remote operations end to end: HTTP API -> NATS -> this machine's agent -> the real Docker Engine.

Logs (tail, since, follow), exec (one-shot, and an interactive session through `tingyu exec`) and
image pre-pull, each checked against what Docker itself says.
"""

from __future__ import annotations

import asyncio
import json
import os
import pty
import select
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

import docker
import httpx
import pytest
import pytest_asyncio
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from tests.e2e.test_auth import as_token, audit_events, audited, make_token, refused, request_id
from tests.e2e.test_containers_e2e import body, create, finished
from tests.support import ADMIN_TOKEN, FAST_ENV, bearer, build_busybox, docker_as, eventually, unique
from tingyu.cli.launcher import Platform
from tingyu.common import subjects
from tingyu.common.bus import Bus
from tingyu.deployer.rollouts.plan import member_job_id

# Five known lines on stdout and stderr each, then a tick every 0.2 s.
PRINTER = (
    "for i in 1 2 3 4 5; do echo out-$i; echo err-$i >&2; done; "
    "n=0; while true; do n=$((n+1)); echo tick-$n; sleep 0.2; done"
)


@pytest_asyncio.fixture(scope="module")
async def printer_ref(platform: Platform, docker_client: docker.DockerClient) -> tuple[str, str]:
    repository = f"{platform.config.registry}/tytest/{unique('printer')}"
    build_busybox(docker_client, repository, "1", cmd=PRINTER)
    await asyncio.to_thread(docker_as, platform, "imager", "push", f"{repository}:1")
    return repository, "1"


@pytest_asyncio.fixture(scope="module")
async def printer(api: httpx.AsyncClient, node_uuid: str, printer_ref: tuple[str, str]) -> AsyncIterator[str]:
    """A running container that prints known lines, shared by this module's read-only checks."""
    name = unique("logs")
    assert (await create(api, body(node_uuid, name, printer_ref)))["state"] == 3
    yield name
    await finished(
        api, (await api.delete("/container/delete", params={"name": name})).json()["data"][0]["jobid"]
    )


async def logs(api: httpx.AsyncClient, **params: Any) -> dict[str, Any]:
    answer: dict[str, Any] = (await api.get("/container/logs", params=params)).json()
    return answer


async def test_tail_answers_the_last_lines_of_stdout_and_stderr(api: httpx.AsyncClient, printer: str) -> None:
    async def ticking() -> dict[str, Any] | None:
        # Docker copies stdout and stderr separately: the last err line may land after a tick, so
        # wait until every err line is in and three ticks follow the last of them.
        answer = await logs(api, name=printer, tail=10000)
        lines = answer["data"]["lines"]
        settled = "err-5" in lines and all(line.startswith("tick-") for line in lines[-3:])
        return answer if settled else None

    everything = (await eventually(ticking, timeout=30))["data"]
    assert everything["name"] == printer
    printed = everything["lines"]
    for stream in ("out", "err"):  # both streams, each in its own order (Docker interleaves them)
        assert [line for line in printed if line.startswith(f"{stream}-")] == [
            f"{stream}-{i}" for i in range(1, 6)
        ]
    three = (await logs(api, name=printer, tail=3))["data"]["lines"]
    assert len(three) == 3
    assert all(line.startswith("tick-") for line in three), three
    stamped = (await logs(api, name=printer, tail=1, timestamps="true"))["data"]["lines"]
    assert stamped[0].split(" ", 1)[0].endswith("Z")  # Docker's RFC 3339 time first


async def test_since_leaves_out_older_lines(api: httpx.AsyncClient, printer: str) -> None:
    later = time.time()

    async def newer_only() -> list[str] | None:
        found: list[str] = (await logs(api, name=printer, tail=10000, since=f"{later:.3f}"))["data"]["lines"]
        return found if found else None

    lines = await eventually(newer_only, timeout=20)
    assert all(line.startswith("tick-") for line in lines)
    assert not any(line.startswith(("out-", "err-")) for line in lines)
    recent = (await logs(api, name=printer, tail=10000, since="1h"))["data"]["lines"]
    assert "out-1" in recent


async def read_events(response: httpx.Response, most: int) -> list[tuple[str, str]]:
    """(event, data) pairs, at most `most`, stopping after an `end` event."""
    events: list[tuple[str, str]] = []
    event = ""
    async for line in response.aiter_lines():
        if line.startswith("event: "):
            event = line[len("event: ") :]
        elif line.startswith("data: "):
            events.append((event, line[len("data: ") :]))
            if event == "end" or len(events) >= most:
                return events
        elif not line:
            event = ""
    return events


async def test_follow_streams_new_lines_and_the_client_may_leave(
    api: httpx.AsyncClient, printer: str
) -> None:
    params = {"name": printer, "tail": 0, "follow": "true", "seconds": 60}
    async with api.stream("GET", "/container/logs", params=params) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        events = await asyncio.wait_for(read_events(response, 5), 30)
    assert [e for e, _ in events] == [""] * 5
    numbers = [int(data.removeprefix("tick-")) for _, data in events]
    assert numbers == sorted(numbers)
    assert numbers == list(range(numbers[0], numbers[0] + 5))  # nothing lost in between


async def test_a_follow_held_past_its_maximum_ends_with_an_envelope(
    api: httpx.AsyncClient, printer: str
) -> None:
    params = {"name": printer, "tail": 0, "follow": "true", "seconds": 1.5}
    started = time.monotonic()
    async with api.stream("GET", "/container/logs", params=params) as response:
        events = await asyncio.wait_for(read_events(response, 10_000), 30)
    assert time.monotonic() - started < 20
    event, data = events[-1]
    assert event == "end"
    ended = json.loads(data)
    assert ended["code"] == "TY0084"
    assert "maximum of 1.5s" in ended["detail"]
    assert any(d.startswith("tick-") for e, d in events if e == "")


async def test_bad_logs_requests_are_refused_with_an_envelope(api: httpx.AsyncClient, printer: str) -> None:
    nobody = unique("nobody")
    cases = [
        ({"name": nobody}, "TY0017", f'deployments.apps "{nobody}" not found'),
        ({"name": nobody, "follow": "true"}, "TY0017", f'deployments.apps "{nobody}" not found'),
        ({"name": ""}, "TY0002", None),
        ({"name": printer, "tail": -1}, "TY0003", "tail must be from 0 to 10000, not -1"),
        ({"name": printer, "tail": 10001}, "TY0003", "tail must be from 0 to 10000, not 10001"),
        ({"name": printer, "since": "yesterday"}, "TY0003", None),
        ({"name": printer, "follow": "true", "seconds": 100000}, "TY0003", None),
    ]
    for params, code, msg in cases:
        answer = await logs(api, **params)
        assert answer["code"] == code, (params, answer)
        if msg:  # the contract's own text of an unknown name is the msg; other reasons are in detail
            assert msg in (answer["msg"] if code == "TY0017" else answer["detail"]), (params, answer)
        assert "data" not in answer


# --- exec ------------------------------------------------------------------------------------------


async def test_exec_answers_output_and_exit_code(
    api: httpx.AsyncClient, printer: str, docker_client: docker.DockerClient
) -> None:
    answer = (
        await api.post("/container/exec", json={"name": printer, "cmd": ["echo", "hello", "there"]})
    ).json()
    assert answer["code"] == 200, answer
    assert answer["data"] == {"name": printer, "exit_code": 0, "output": "hello there\n", "truncated": False}
    failing = {"name": printer, "cmd": ["sh", "-c", "echo oops >&2; ls /nowhere; exit 3"]}
    answer = (await api.post("/container/exec", json=failing)).json()["data"]
    assert answer["exit_code"] == 3
    assert "oops" in answer["output"]
    # the command really ran in the container: it leaves a file Docker can see
    await api.post(
        "/container/exec", json={"name": printer, "cmd": ["sh", "-c", "echo made > /data/exec.txt"]}
    )
    seen = docker_client.containers.get(printer).exec_run(["cat", "/data/exec.txt"]).output
    assert seen == b"made\n"


def cli(
    platform: Platform, *args: str, stdin: bytes = b"", token: str = ADMIN_TOKEN
) -> subprocess.CompletedProcess[bytes]:
    """`tingyu ...` as a user runs it, with `token` as TINGYU_TOKEN (in a folder without var/api)."""
    return subprocess.run(
        [sys.executable, "-m", "tingyu.cli.main", *args],
        input=stdin,
        capture_output=True,
        timeout=60,
        check=False,
        env={**os.environ, "TINGYU_TOKEN": token},
        cwd=platform.config.state_dir,
    )


async def test_an_interactive_session_through_the_cli(platform: Platform, printer: str) -> None:
    api = platform.config.api_url
    script = b"echo in-session-$((40+2))\ncat /data/hello.txt\nexit 7\n"
    done = await asyncio.to_thread(cli, platform, "exec", "--api", api, printer, "--", "sh", stdin=script)
    assert done.returncode == 7, done.stderr
    assert b"in-session-42\n" in done.stdout
    assert b"hello from tingyu\n" in done.stdout
    # the end of stdin ends a command that reads it
    done = await asyncio.to_thread(cli, platform, "exec", "--api", api, printer, "--", "cat", stdin=b"a\nb\n")
    assert (done.returncode, done.stdout) == (0, b"a\nb\n"), done.stderr
    waited = await asyncio.to_thread(
        cli, platform, "exec", "--api", api, "--wait", printer, "--", "echo", "hi"
    )
    assert (waited.returncode, waited.stdout) == (0, b"hi\n")


def read_until(fd: int, wanted: bytes, seconds: float) -> bytes:
    """What the terminal shows until `wanted` appears, the other side closes, or time is up."""
    output = b""
    deadline = time.monotonic() + seconds
    while wanted not in output and time.monotonic() < deadline:
        if not select.select([fd], [], [], 0.5)[0]:
            continue
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # EIO: the process on the other side is gone
            break
        if not chunk:
            break
        output += chunk
    return output


async def test_an_interactive_session_with_a_tty(platform: Platform, printer: str) -> None:
    """Through a pseudo-terminal, as a person at a terminal runs it: the remote side has a TTY."""
    api = platform.config.api_url
    command = [sys.executable, "-m", "tingyu.cli.main", "exec", "--api", api, printer, "--", "sh"]

    def drive() -> tuple[int, bytes]:
        pid, fd = pty.fork()
        if pid == 0:
            os.execve(sys.executable, command, {**os.environ, "TINGYU_TOKEN": ADMIN_TOKEN})
        output = read_until(fd, b"# ", 30)  # the remote shell's prompt
        os.write(fd, b"tty && echo is-$((6*7))\n")
        output += read_until(fd, b"is-42", 30)
        os.write(fd, b"exit 5\n")
        output += read_until(fd, b"never", 10)
        _, status = os.waitpid(pid, 0)
        os.close(fd)
        return os.waitstatus_to_exitcode(status), output

    code, output = await asyncio.to_thread(drive)
    assert b"/dev/pts/" in output, output
    assert b"is-42" in output, output
    assert code == 5, output


def running_commands(docker_client: docker.DockerClient, name: str) -> str:
    """The command lines of every process in the container, as `docker top` lists them."""
    top = docker_client.containers.get(name).top()
    return "\n".join(" ".join(row) for row in top.get("Processes") or [])


async def test_a_session_the_client_leaves_kills_its_command(
    platform: Platform, printer: str, docker_client: docker.DockerClient
) -> None:
    """Closing the WebSocket ends the command it started, not only the connection."""
    seconds = str(300 + int(unique("")[-4:], 16) % 600)  # a sleep no other test runs
    url = ws_exec(platform, printer, "sleep", seconds)
    async with connect(url, additional_headers=bearer(ADMIN_TOKEN)):
        await eventually(lambda: as_async(f"sleep {seconds}" in running_commands(docker_client, printer)))
    await eventually(lambda: as_async(f"sleep {seconds}" not in running_commands(docker_client, printer)))


async def test_a_command_past_its_time_limit_is_killed(
    api: httpx.AsyncClient, printer: str, docker_client: docker.DockerClient
) -> None:
    seconds = str(300 + int(unique("")[-4:], 16) % 600)
    answer = (
        await api.post("/container/exec", json={"name": printer, "cmd": ["sleep", seconds], "timeout": 1})
    ).json()
    assert answer["code"] != 200, answer
    assert f"sleep {seconds}" not in running_commands(docker_client, printer)


async def as_async(value: bool) -> bool:
    return value


async def test_exec_refusals(
    api: httpx.AsyncClient, platform: Platform, node_uuid: str, printer_ref: tuple[str, str]
) -> None:
    nobody = unique("nobody")
    unknown = (await api.post("/container/exec", json={"name": nobody, "cmd": ["true"]})).json()
    assert (unknown["code"], unknown["msg"]) == ("TY0017", f'deployments.apps "{nobody}" not found')
    empty = (await api.post("/container/exec", json={"name": nobody, "cmd": []})).json()
    assert empty["code"] == "TY0002"
    name = unique("stopped")
    assert (await create(api, body(node_uuid, name, printer_ref)))["state"] == 3
    try:
        stop = (await api.post("/container/stop", params={"name": name})).json()
        assert (await finished(api, stop["data"][0]["jobid"]))["state"] == 3
        stopped = (await api.post("/container/exec", json={"name": name, "cmd": ["true"]})).json()
        assert stopped["code"] == "TY0080", stopped
        assert f"container {name} is not running" in stopped["detail"]
        done = await asyncio.to_thread(
            cli, platform, "exec", "--api", platform.config.api_url, name, "--", "sh", stdin=b"exit\n"
        )
        assert done.returncode == 1
        assert b"TY0080" in done.stderr
    finally:
        delete = (await api.delete("/container/delete", params={"name": name})).json()
        await finished(api, delete["data"][0]["jobid"])


# --- pre-pull --------------------------------------------------------------------------------------


async def prepulled(api: httpx.AsyncClient, request: dict[str, Any]) -> dict[str, Any]:
    answer = (await api.post("/image/prepull", json=request)).json()
    assert (answer["code"], answer["data"]) == (200, None), answer
    return await finished(api, answer["jobid"], timeout=120)


async def test_prepull_by_area_counts_an_image_already_here_as_done(
    api: httpx.AsyncClient, bus: Bus, node_uuid: str, busybox_ref: tuple[str, str]
) -> None:
    area, operator = FAST_ENV["TINGYU_AGENT_AREA"], FAST_ENV["TINGYU_AGENT_OPERATOR"]
    machines = [
        n
        for n in await bus.store(subjects.NODES).values()
        if (n.facts.area, n.facts.operator) == (area, operator)
    ]
    request = {
        "area": area,
        "operator": operator,
        "percent": 100,
        "image": busybox_ref[0],
        "imageversion": busybox_ref[1],
        "deadline": 20,  # machines other tests left behind (NotReady) fail by then
    }
    job = await prepulled(api, request)
    result = job["result"]
    assert result["total"] == len(machines)
    assert result["already_present"] >= 1
    assert node_uuid not in result["failures"]
    assert result["pending"] == 0
    assert result["total"] == result["pulled"] + result["already_present"] + result["failed"]


async def test_prepull_of_an_image_not_yet_here_pulls_it(
    api: httpx.AsyncClient, platform: Platform, node_uuid: str, docker_client: docker.DockerClient
) -> None:
    repository = f"{platform.config.registry}/tytest/{unique('prepull')}"
    build_busybox(docker_client, repository, "1")
    await asyncio.to_thread(docker_as, platform, "imager", "push", f"{repository}:1")
    docker_client.images.remove(f"{repository}:1", force=True)
    job = await prepulled(api, {"uuids": [node_uuid], "image": repository, "imageversion": "1"})
    assert job["state"] == 3, job
    assert {k: job["result"][k] for k in ("total", "pulled", "already_present", "failed", "pending")} == {
        "total": 1,
        "pulled": 1,
        "already_present": 0,
        "failed": 0,
        "pending": 0,
    }
    assert docker_client.images.get(f"{repository}:1")  # Docker has it now
    again = await prepulled(api, {"uuids": [node_uuid], "image": repository, "imageversion": "1"})
    assert (again["result"]["already_present"], again["result"]["pulled"]) == (1, 0)


async def test_a_prepull_that_cannot_reach_its_image_fails_with_the_reason(
    api: httpx.AsyncClient, platform: Platform, node_uuid: str
) -> None:
    missing = f"{platform.config.registry}/tytest/{unique('absent')}"
    job = await prepulled(api, {"uuids": [node_uuid], "image": missing, "imageversion": "1"})
    assert job["state"] == 4, job
    assert job["result"]["failed"] == 1
    reason = job["result"]["failures"][node_uuid]
    assert f"cannot pull {missing}:1" in reason
    assert node_uuid in job["message"]


async def test_bad_prepull_requests_are_refused(api: httpx.AsyncClient, busybox_ref: tuple[str, str]) -> None:
    image, version = busybox_ref
    cases = [
        ({"area": "南京", "operator": "铁通", "image": image, "imageversion": version}, "TY0032"),
        ({"operator": "移动", "image": image, "imageversion": version}, "TY0002"),
        ({"uuids": [], "image": image, "imageversion": version}, "TY0002"),
        ({"uuids": ["tingyu-" + "0" * 32], "image": image, "imageversion": version}, "TY0015"),
        ({"area": "南京", "operator": "移动", "image": "nosuchimage", "imageversion": "1"}, "TY0003"),
        (
            {"area": "南京", "operator": "移动", "percent": 120, "image": image, "imageversion": version},
            "TY0003",
        ),
    ]
    for request, code in cases:
        answer = (await api.post("/image/prepull", json=request)).json()
        assert answer["code"] == code, (request, answer)
        assert "jobid" not in answer


async def test_a_rollout_with_prepull_pulls_everywhere_before_the_first_upgrade(
    api: httpx.AsyncClient, bus: Bus, node_uuid: str, platform: Platform, docker_client: docker.DockerClient
) -> None:
    repository = f"{platform.config.registry}/tytest/{unique('pproll')}"
    for version in ("1", "2"):
        build_busybox(docker_client, repository, version)
        await asyncio.to_thread(docker_as, platform, "imager", "push", f"{repository}:{version}")
    docker_client.images.remove(f"{repository}:2", force=True)
    name = unique("pproll")
    assert (await create(api, body(node_uuid, name, (repository, "1"))))["state"] == 3
    try:
        request = {
            "area": FAST_ENV["TINGYU_AGENT_AREA"],
            "operator": FAST_ENV["TINGYU_AGENT_OPERATOR"],
            "percent": 100,
            "image": repository,
            "imageversion": "2",
            "prepull": True,
        }
        answer = (await api.put("/container/updateByInherit", json=request)).json()
        assert answer["code"] == 200, answer
        rollout = await finished(api, answer["jobid"], timeout=120)
        assert rollout["state"] == 3, rollout
        prepull = await finished(api, rollout["result"]["prepulljob"])
        assert prepull["state"] == 3, prepull
        assert (prepull["result"]["total"], prepull["result"]["pulled"]) == (1, 1)
        jobs = bus.store(subjects.JOBS)
        pulled = await jobs.get(rollout["result"]["prepulljob"])
        upgrade = await jobs.get(member_job_id(answer["jobid"], name, "2"))
        assert pulled is not None
        assert upgrade is not None
        assert upgrade.created_at >= pulled.updated_at  # the upgrade came after the pull had finished
        assert docker_client.api.inspect_container(name)["Config"]["Image"] == f"{repository}:2"
        refused = (await api.put("/container/updateByInherit", json={**request, "prepull": "yes"})).json()
        assert refused["code"] == "TY0003"
    finally:
        delete = (await api.delete("/container/delete", params={"name": name})).json()["data"][0]
        await finished(api, delete["jobid"])


# --- under API tokens ------------------------------------------------------------------------------


def ws_exec(platform: Platform, name: str, *cmd: str) -> str:
    query = "&".join(f"cmd={part}" for part in cmd)
    root = platform.config.api_url.replace("http://", "ws://", 1)
    return f"{root}/container/exec?name={name}&{query}&tty=false"


async def ws_refusal(url: str, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
    """The HTTP status and envelope of a WebSocket upgrade the API refuses."""
    with pytest.raises(InvalidStatus) as refused:
        async with connect(url, additional_headers=headers):
            pass
    answer: dict[str, Any] = json.loads(refused.value.response.body or b"{}")
    return refused.value.response.status_code, answer


async def ws_session(url: str, headers: dict[str, str]) -> tuple[bytes, dict[str, Any]]:
    """(output, last envelope) of a whole session."""
    output = b""
    async with connect(url, additional_headers=headers) as ws:
        async for message in ws:
            if isinstance(message, bytes):
                output += message
                continue
            return output, json.loads(message)
    raise AssertionError(f"the session closed without an envelope; output {output!r}")


async def test_logs_and_exec_need_an_operator_of_the_machines_area_and_are_audited(
    api: httpx.AsyncClient, platform: Platform, bus: Bus, printer: str, busybox_ref: tuple[str, str]
) -> None:
    """The session's machine is in 南京: a viewer and a 上海 operator are refused (403 TY0071) on
    logs, exec (POST and WebSocket) and pre-pull; no token refuses the WebSocket's upgrade (401); a
    南京 operator reads and runs, and each call is an audit event with its actor."""
    _, viewer = await make_token(api, "viewer")
    _, shanghai = await make_token(api, "operator", ("上海",))
    nanjing_name, nanjing = await make_token(api, "operator", ("南京",))
    url = ws_exec(platform, printer, "echo", "in-session")
    image, version = busybox_ref
    prepull = {"area": "南京", "operator": "移动", "image": image, "imageversion": version}

    status, answer = await ws_refusal(url, {})
    assert (status, answer["code"]) == (401, "TY0070"), answer
    status, answer = await ws_refusal(url, bearer(viewer))
    assert (status, answer["code"]) == (403, "TY0071"), answer
    async with as_token(platform, viewer) as client:
        refused(await client.get("/container/logs", params={"name": printer}), 403, "TY0071")
        refused(await client.post("/container/exec", json={"name": printer, "cmd": ["true"]}), 403, "TY0071")
    async with as_token(platform, shanghai) as client:
        answer = refused(await client.get("/container/logs", params={"name": printer}), 403, "TY0071")
        assert "南京" in answer["detail"], answer
        refused(await client.post("/container/exec", json={"name": printer, "cmd": ["true"]}), 403, "TY0071")
        refused(await client.post("/image/prepull", json=prepull), 403, "TY0071")
    _, inside = await ws_session(url, bearer(shanghai))  # authenticated: refused inside the session
    assert inside["code"] == "TY0071", inside

    logs_id, exec_id, session_id = request_id(), request_id(), request_id()
    async with as_token(platform, nanjing) as client:
        lines = (
            await client.get("/container/logs", params={"name": printer}, headers={"X-Request-Id": logs_id})
        ).json()
        assert lines["code"] == 200, lines
        ran = await client.post(
            "/container/exec",
            json={"name": printer, "cmd": ["echo", "ok"]},
            headers={"X-Request-Id": exec_id},
        )
        assert ran.json()["data"]["output"] == "ok\n", ran.text
    output, last = await ws_session(url, {**bearer(nanjing), "X-Request-Id": session_id})
    assert (output, last["data"]["exit_code"]) == (b"in-session\n", 0), (output, last)

    for action, rid, method, status in (
        ("container.logs", logs_id, "GET", 200),
        ("container.exec", exec_id, "POST", 200),
        ("container.exec", session_id, "GET", 101),  # the WebSocket, once it ended
    ):
        event = await audited(bus, action, rid)
        assert (event.actor, event.method, event.status, event.code) == (nanjing_name, method, status, "200")
        assert event.targets[:1] == [printer], event
    refusals = [
        e for e in await audit_events(bus, "container.exec") if e.status == 403 and e.code == "TY0071"
    ]
    assert len(refusals) >= 3, refusals  # the viewer's POST and upgrade, the 上海 operator's POST and session


async def test_the_cli_without_a_token_is_refused(platform: Platform, printer: str) -> None:
    api = platform.config.api_url
    for args in (("exec", "--api", api, printer, "--", "sh"), ("logs", "--api", api, printer)):
        done = await asyncio.to_thread(cli, platform, *args, stdin=b"exit\n", token="")
        assert done.returncode == 1, done
        assert b"TY0070" in done.stderr, done.stderr
