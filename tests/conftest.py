"""Fixtures that start the real parts: nats-server, dockerd, docker-registry and the platform itself.

Everything is started once per test session on free ports and in a temporary folder,
through the same launcher `tingyu up` uses; each test makes its own names.
"""

from __future__ import annotations

import asyncio
import atexit
import contextvars
import json
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import docker
import httpx
import nats.errors
import pytest
import pytest_asyncio

from tingyu.agent.identity import load_or_create
from tingyu.cli.launcher import Platform, PlatformConfig, free_port
from tingyu.common.auth import jwt
from tingyu.common.auth.material import AuthDir, write_secret
from tingyu.common.auth.permissions import REPLY_TTL_S, machine_inbox, machine_permissions
from tingyu.common.auth.tls import ensure_local_tls
from tingyu.common.bus import Bus
from tingyu.common.settings import PlatformSettings

T = TypeVar("T")

# The edge policy's default folders plus the temporary folder the tests mount (tmp_path lives there),
# and the registry integration tests name in full references (their peers never pull); the fixed
# deny list stays as it is. In-process agents and services read it from the environment too.
TEST_POLICY = {
    "TINGYU_POLICY_HOSTPATH_ALLOW": f"/data,/storage,/tmp/tingyu,{tempfile.gettempdir()}",
    "TINGYU_POLICY_REGISTRIES": "127.0.0.1:5000",
}
os.environ.update(TEST_POLICY)
# The bootstrap admin token of the test platform: the suite runs with authentication on, as users do.
ADMIN_TOKEN = "test-admin-" + secrets.token_hex(16)
# One operator, account and CA for every nats-server this session starts (made the way `tingyu up`
# makes them). The tests' own connections are the admin user's, through the settings every process
# reads (TINGYU_NATS_CREDS, TINGYU_NATS_CA): auth and TLS are on for the whole suite.
TRUST = Path(tempfile.mkdtemp(prefix="tingyu-trust-"))
atexit.register(shutil.rmtree, TRUST, True)
AUTH = AuthDir(TRUST / "auth").ensure()
NATS_CA, _, _ = ensure_local_tls(TRUST / "tls")
os.environ["TINGYU_NATS_CREDS"] = str(AUTH.creds("admin"))
os.environ["TINGYU_NATS_CA"] = str(NATS_CA)
os.environ["TINGYU_NATS_AUTH_DIR"] = str(AUTH.root)


def machine_creds(folder: Path, node_uuid: str, reply_ttl_s: float = REPLY_TTL_S) -> tuple[Path, str]:
    """A machine's own credential, signed as the API signs it at enrollment: (creds file, public key)."""
    seed = jwt.new_seed("user")
    permissions = machine_permissions(node_uuid, reply_ttl_s)
    token = jwt.user_jwt(AUTH.seed("account"), jwt.public_key(seed), node_uuid, permissions)
    path = folder / f"{node_uuid}.creds"
    write_secret(path, jwt.creds(token, seed))
    return path, jwt.public_key(seed)


def machine_settings(nats_url: str, creds: Path, node_uuid: str) -> PlatformSettings:
    """How a machine connects: its own credential and inbox."""
    return PlatformSettings(
        nats_url=nats_url, nats_creds=str(creds), nats_inbox_prefix=machine_inbox(node_uuid)
    )


def enroll_offline(agent_state: Path) -> str:
    """Give an agent's state folder an identity and an enrolled credential (for agents started by
    tests without the API); returns the uuid."""
    uuid = load_or_create(agent_state).uuid
    creds, _ = machine_creds(agent_state, uuid)
    creds.rename(agent_state / "nats.creds")
    return uuid


def trusted(config: PlatformConfig) -> PlatformConfig:
    """The config with this session's trust material."""
    config.auth_dir = AUTH.root
    config.tls_dir = TRUST / "tls"
    return config


# Short periods so that convergence, NotReady and metering windows happen within a test.
FAST_ENV = {
    "TINGYU_AGENT_HEARTBEAT_S": "1",
    "TINGYU_AGENT_RESYNC_S": "3",
    "TINGYU_AGENT_SAMPLE_S": "1",
    "TINGYU_AGENT_AREA": "南京",
    "TINGYU_AGENT_OPERATOR": "移动",
    "TINGYU_AGENT_BANDWIDTH_MBPS": "1000",
    "TINGYU_AGENT_STOP_TIMEOUT_S": "1",
    "TINGYU_NODES_NOT_READY_AFTER_S": "4",
    "TINGYU_NODES_LEASE_S": "2",
    "TINGYU_DEPLOYER_JOB_TIMEOUT_S": "120",
    "TINGYU_DEPLOYER_ROLLOUT_MAX_UNAVAILABLE": "2",
    "TINGYU_DEPLOYER_ROLLOUT_MIN_EXECUTED": "2",
    "TINGYU_DEPLOYER_ROLLOUT_TICK_S": "0.3",
    "TINGYU_METERING_BATCH_WAIT_S": "0.5",
    "TINGYU_LOG_LEVEL": "INFO",
    **TEST_POLICY,
    "TINGYU_API_ADMIN_TOKEN": ADMIN_TOKEN,
}


def bearer(token: str = ADMIN_TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def unique(prefix: str = "t") -> str:
    """A fresh DNS-1123 name for one test."""
    return f"{prefix}{secrets.token_hex(5)}"


class TransientAnswer(Exception):
    """The API answered 503 (TY0010: a worker or NATS was briefly unavailable); asking again may work."""


# Failures that say "not now" rather than "wrong": `eventually` asks again after them.
TRANSIENT: tuple[type[BaseException], ...] = (
    TimeoutError,
    httpx.TransportError,
    nats.errors.Error,
    TransientAnswer,
)
_RETRYING: contextvars.ContextVar[bool] = contextvars.ContextVar("retrying", default=False)


async def eventually(
    check: Callable[[], Awaitable[T | None]], timeout: float = 60.0, every: float = 0.2
) -> T:
    """Poll an async check until it returns something truthy; fail with its last value otherwise.

    A transient failure inside the check (a timeout, a dropped connection, a TY0010 answer from the
    `api` client) counts as "not yet"; if it is still the last thing seen at the deadline, it is raised.
    """
    deadline = asyncio.get_running_loop().time() + timeout
    last: Any = None
    while True:
        token = _RETRYING.set(True)
        try:
            last = await check()
        except TRANSIENT as exc:
            last = exc
        finally:
            _RETRYING.reset(token)
        if last and not isinstance(last, BaseException):
            return last  # type: ignore[no-any-return]
        if asyncio.get_running_loop().time() > deadline:
            if isinstance(last, BaseException):
                raise AssertionError(f"condition not met within {timeout}s; last error: {last!r}") from last
            raise AssertionError(f"condition not met within {timeout}s; last value: {last!r}")
        await asyncio.sleep(every)


async def raise_transient(response: httpx.Response) -> None:
    """Event hook of the `api` client: inside `eventually`, a TY0010 answer is retried, not read."""
    if response.status_code == 503 and _RETRYING.get():
        await response.aread()
        raise TransientAnswer(response.text)


@pytest.fixture(scope="session")
def state_dir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="tingyu-test-") as folder:
        yield Path(folder)


@pytest.fixture(scope="session")
def platform(state_dir: Path) -> Iterator[Platform]:
    """The whole platform (nats-server, registry, dockerd if needed, every service, one agent)."""
    config = trusted(
        PlatformConfig(
            state_dir=state_dir,
            nats_port=free_port(),
            registry_port=free_port(),
            api_port=free_port(),
            extra_env=FAST_ENV,
            colour=False,
            log_file=Path(os.environ.get("TINGYU_TEST_LOG", str(state_dir / "platform.log"))),
        )
    )
    platform = Platform(config)
    try:
        platform.start_all()
        yield platform
    except BaseException:
        if config.log_file and config.log_file.exists():
            print(config.log_file.read_text()[-20000:])
        raise
    finally:
        # The agent's containers go while the Docker Engine is still up (the platform may have
        # started it, and then stops it last).
        if "agent" in platform.procs:
            platform.kill("agent", signal.SIGTERM)
        remove_agent_containers(state_dir / "agent" / "identity.json")
        platform.stop()
        if config.log_file and config.log_file.exists():
            print(f"platform log: {config.log_file}")


def remove_agent_containers(identity: Path) -> None:
    """The session's agent is gone; its containers (restart policy always) must not outlive it."""
    if not identity.exists():
        return
    uuid = json.loads(identity.read_text())["uuid"]
    client = docker.from_env(timeout=60)
    try:
        for container in client.containers.list(all=True, filters={"label": f"tingyu.node={uuid}"}):
            container.remove(force=True)
    finally:
        client.close()


@pytest_asyncio.fixture(scope="session")
async def api(platform: Platform) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client rooted at /tingyu, sending the bootstrap admin token."""
    async with httpx.AsyncClient(
        base_url=platform.config.api_url,
        timeout=30.0,
        headers=bearer(),
        event_hooks={"response": [raise_transient]},
    ) as client:
        yield client


@pytest_asyncio.fixture(scope="session")
async def bus(platform: Platform) -> AsyncIterator[Bus]:
    """A NATS connection of the test's own, to check what landed in streams and buckets."""
    settings = PlatformSettings(nats_url=platform.config.nats_url)
    bus = await Bus.connect(settings, "tingyu-tests")
    yield bus
    await bus.close()


@pytest.fixture(scope="session")
def docker_client(platform: Platform) -> Iterator[docker.DockerClient]:
    client = docker.from_env(timeout=60)
    yield client
    client.close()


def build_busybox(client: docker.DockerClient, repository: str, tag: str, cmd: str = "sleep 100000") -> str:
    """A tiny image from Debian's busybox-static via `docker import` (nothing can be pulled here)."""
    with tempfile.TemporaryDirectory() as root:
        bin_dir = Path(root, "bin")
        bin_dir.mkdir()
        busybox = bin_dir / "busybox"
        busybox.write_bytes(Path("/bin/busybox").read_bytes())
        busybox.chmod(0o755)
        for applet in ("sh", "sleep", "cat", "echo", "ls", "dd", "wget", "nc", "httpd", "head", "yes"):
            (bin_dir / applet).symlink_to("busybox")
        Path(root, "data").mkdir()
        Path(root, "data", "hello.txt").write_text("hello from tingyu\n")
        reference = f"{repository}:{tag}"
        subprocess.run(
            ["docker", "import", "-c", f'CMD ["/bin/sh", "-c", "{cmd}"]', "-", reference],
            input=subprocess.run(["tar", "-C", root, "-c", "."], check=True, capture_output=True).stdout,
            check=True,
            capture_output=True,
        )
    return reference


@pytest.fixture(scope="session")
def busybox_ref(platform: Platform, docker_client: docker.DockerClient) -> tuple[str, str]:
    """(image, version) of a busybox image pushed to the platform's registry, by full reference."""
    repository = f"{platform.config.registry}/tytest/busybox"
    build_busybox(docker_client, repository, "1")
    docker_as(platform, "imager", "push", f"{repository}:1")
    return repository, "1"


def docker_as(platform: Platform, user: str, *args: str) -> None:
    """The docker CLI logged in to the platform's registry as `user` (`imager` pushes, `agent`
    pulls), with a config folder of its own so the machine's docker login is left alone."""
    password = platform.registry_users()[user]
    with tempfile.TemporaryDirectory() as config:
        login = ["docker", "--config", config, "login", "-u", user, "--password-stdin"]
        subprocess.run(
            [*login, platform.config.registry], input=password.encode(), check=True, capture_output=True
        )
        subprocess.run(["docker", "--config", config, *args], check=True, capture_output=True)


@pytest_asyncio.fixture(scope="session")
async def node_uuid(api: httpx.AsyncClient, state_dir: Path) -> str:
    """The uuid of this machine's agent (from its identity file), once it has joined."""
    identity = state_dir / "agent" / "identity.json"

    async def joined() -> str | None:
        if not identity.exists():
            return None
        uuid = str(json.loads(identity.read_text())["uuid"])
        body = (await api.get("/node/get", params={"name": uuid})).json()
        return uuid if body["code"] == 200 else None

    return await eventually(joined, timeout=60)


# The folder a test lives in -> its layer's marker. Hostile-input tests drive the whole platform.
LAYERS = {
    "unit": "unit",
    "integration": "integration",
    "e2e": "e2e",
    "abuse": "e2e",
    "cluster": "cluster",
    "kubernetes": "kubernetes",
    "console": "console",
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test carries the marker of its layer (its folder), so `pytest -m unit` runs one layer."""
    root = Path(__file__).parent
    for item in items:
        folder = item.path.relative_to(root).parts[0]
        if folder not in LAYERS:
            raise pytest.UsageError(f"{item.nodeid}: tests live under tests/{{{','.join(LAYERS)}}}")
        layer = LAYERS[folder]
        item.add_marker(layer)
