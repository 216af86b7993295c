"""Images and containers on the machine's Docker Engine: busybox images built here (nothing is
pulled), the registry as one of its users, and cleaning up after an agent."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import docker
import httpx

from tingyu.cli.launcher import Platform
from tingyu.imager.registry import ChallengeAuth


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


def build_busybox(
    client: docker.DockerClient, repository: str, tag: str, cmd: str = "sleep 100000", random_bytes: int = 0
) -> str:
    """A tiny image from Debian's busybox-static via `docker import` (nothing can be pulled here);
    with `random_bytes`, a file of that many random bytes (which no compression shrinks) in /data."""
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
        if random_bytes:
            Path(root, "data", "random.bin").write_bytes(os.urandom(random_bytes))
        reference = f"{repository}:{tag}"
        subprocess.run(
            ["docker", "import", "-c", f'CMD ["/bin/sh", "-c", "{cmd}"]', "-", reference],
            input=subprocess.run(["tar", "-C", root, "-c", "."], check=True, capture_output=True).stdout,
            check=True,
            capture_output=True,
        )
    return reference


@contextlib.asynccontextmanager
async def registry_http(platform: Platform, who: str = "imager") -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client of the platform's registry that gets its bearer tokens from the API's token
    service as `who` (`imager` pushes and deletes, `agent` is the platform's own machine and pulls)."""
    user, password = platform.registry_credentials(who)
    async with httpx.AsyncClient(timeout=30) as tokens:
        auth = ChallengeAuth(user, password, tokens)
        async with httpx.AsyncClient(base_url=f"http://{platform.config.registry}", auth=auth) as http:
            yield http


def docker_as(platform: Platform, who: str, *args: str) -> None:
    """The docker CLI logged in to the platform's registry as `who` (`imager` pushes, `agent`
    pulls with the machine's own uuid and JWT), with a config folder of its own so the machine's
    docker login is left alone; dockerd then fetches its tokens from the API itself."""
    user, password = platform.registry_credentials(who)
    with tempfile.TemporaryDirectory() as config:
        login = ["docker", "--config", config, "login", "-u", user, "--password-stdin"]
        subprocess.run(
            [*login, platform.config.registry], input=password.encode(), check=True, capture_output=True
        )
        subprocess.run(["docker", "--config", config, *args], check=True, capture_output=True)
