"""Fixtures that start the real parts: nats-server, dockerd, docker-registry and the platform itself.

Everything is started once per test session on free ports and in a temporary folder,
through the same launcher `tingyu up` uses; each test makes its own names.
"""

from __future__ import annotations

import json
import os
import signal
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import docker
import httpx
import pytest
import pytest_asyncio

from tests.support import (
    FAST_ENV,
    bearer,
    build_busybox,
    docker_as,
    eventually,
    raise_transient,
    remove_agent_containers,
    trusted,
)
from tingyu.cli.launcher import Platform, PlatformConfig, free_port
from tingyu.common.bus import Bus
from tingyu.common.settings import PlatformSettings


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


@pytest.fixture(scope="session")
def busybox_ref(platform: Platform, docker_client: docker.DockerClient) -> tuple[str, str]:
    """(image, version) of a busybox image pushed to the platform's registry, by full reference."""
    repository = f"{platform.config.registry}/tytest/busybox"
    build_busybox(docker_client, repository, "1")
    docker_as(platform, "imager", "push", f"{repository}:1")
    return repository, "1"


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
