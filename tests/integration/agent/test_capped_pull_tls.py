"""Capped pulls from a registry served over HTTPS (docs/remote.md#bandwidth-cap): the agent's proxy
speaks TLS upstream, verifying the registry with the agent's trust settings (`TINGYU_REGISTRY_CA`),
or as Docker does for a registry it treats as insecure (127.0.0.0/8: unverified HTTPS).

The real Docker Engine pulls through the proxy; the registry is a real docker-registry with a
certificate of a CA made for the test, for this host's name and 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import docker
import pytest
import pytest_asyncio

from tests.integration.imager.test_registry_auth import registry_serving
from tests.support import build_busybox, unique
from tingyu.agent.docker_runtime import DockerRuntime
from tingyu.agent.pull_proxy import pull_proxies
from tingyu.agent.runtime import RuntimeFailure
from tingyu.common.auth.tls import ensure_local_tls
from tingyu.common.settings import PlatformSettings

RATE = 64 * 1024 * 1024  # what is checked here is the way there, not the speed


@pytest.fixture(scope="module")
def tls_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Path]]:
    """(port, CA file) of a docker-registry on 127.0.0.1 that speaks only HTTPS."""
    root = tmp_path_factory.mktemp("registry-tls")
    ca, cert, key = ensure_local_tls(root / "tls")
    with registry_serving(root, tls=(cert, key)) as url:
        yield int(url.rsplit(":", 1)[1]), ca


@pytest.fixture(scope="module")
def pushed(engine: docker.DockerClient, tls_registry: tuple[int, Path]) -> str:
    """`tytest/<name>:1` on the TLS registry and no longer on this machine: its path and tag."""
    port, _ = tls_registry
    path = f"tytest/{unique('tls')}:1"
    image_ref = build_busybox(engine, f"127.0.0.1:{port}/{path}".rsplit(":", 1)[0], "1")
    subprocess.run(["docker", "push", image_ref], check=True, capture_output=True)  # Docker: insecure, HTTPS
    engine.images.remove(image_ref, force=True)
    return path


def runtime_with(engine: docker.DockerClient, platform: PlatformSettings) -> DockerRuntime:
    runtime = DockerRuntime(docker.from_env(timeout=60), pull_timeout_s=60)
    runtime.pull_proxies = pull_proxies(platform, RATE)
    return runtime


@pytest_asyncio.fixture
async def cleanup(engine: docker.DockerClient) -> AsyncIterator[list[str]]:
    """References the test pulled: removed afterwards by image id, every name they have included."""
    pulled: list[str] = []
    yield pulled
    for image_ref in pulled:
        with contextlib.suppress(docker.errors.NotFound):
            engine.images.remove(engine.images.get(image_ref).id, force=True)


@pytest.mark.parametrize("host", [socket.gethostname(), "127.0.0.1"])
async def test_a_capped_pull_over_https_leaves_the_image_under_its_name(
    engine: docker.DockerClient, tls_registry: tuple[int, Path], pushed: str, cleanup: list[str], host: str
) -> None:
    """By this host's name the certificate is verified against the CA given; by 127.0.0.1 the
    registry is one Docker treats as insecure, reached over HTTPS all the same."""
    port, ca = tls_registry
    image_ref = f"{host}:{port}/{pushed}"
    cleanup.append(image_ref)
    runtime = runtime_with(engine, PlatformSettings(registry_ca=str(ca)))
    try:
        await runtime.pull(image_ref)
    finally:
        runtime.close()
    assert engine.api.inspect_image(image_ref)["RepoTags"] == [image_ref]


async def test_a_registry_certificate_the_agent_does_not_trust_fails_the_pull(
    engine: docker.DockerClient, tls_registry: tuple[int, Path], pushed: str, cleanup: list[str]
) -> None:
    port, _ = tls_registry
    image_ref = f"{socket.gethostname()}:{port}/{pushed}"
    cleanup.append(image_ref)
    runtime = runtime_with(engine, PlatformSettings())  # no TINGYU_REGISTRY_CA: the system's CAs only
    try:
        with pytest.raises(
            RuntimeFailure,
            match=f"registry at https://{socket.gethostname()}:{port}: .*CERTIFICATE_VERIFY_FAILED",
        ):
            await runtime.pull(image_ref)
    finally:
        runtime.close()
    with pytest.raises(docker.errors.ImageNotFound):
        engine.images.get(image_ref)
