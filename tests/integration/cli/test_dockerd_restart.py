"""The Docker Engine a launcher starts: after one was killed -9, the next start still works.

A killed dockerd leaves its containerd (or its pid file, naming a process not yet reaped) behind,
and a plain restart then waits on a containerd that never answers. It kills the dockerd it starts,
so it needs none running: `make test-faults` runs it first and alone (in CI nothing runs then)."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import docker
import pytest

from tests.support import unique
from tests.support.images import build_busybox
from tingyu.cli import dockerd
from tingyu.cli.launcher import Platform, PlatformConfig, docker_answers

pytestmark = pytest.mark.faults


def test_a_dockerd_killed_with_a_running_container_is_followed_by_one_that_starts(
    tmp_path: Path,
) -> None:
    if docker_answers() or dockerd.dockerd_pids():
        pytest.skip("a Docker Engine this test did not start runs here; it is not the test's to kill")
    name = unique("killed-with-dockerd")
    first = Platform(PlatformConfig(state_dir=tmp_path, colour=False, log_file=tmp_path / "first.log"))
    second = Platform(PlatformConfig(state_dir=tmp_path, colour=False, log_file=tmp_path / "second.log"))
    try:
        first.ensure_dockerd()
        client = docker.from_env()
        image = build_busybox(client, "tytest/dockerd-restart", "1")
        client.containers.run(image, detach=True, name=name)
        first.kill("dockerd", signal.SIGKILL)

        second.ensure_dockerd()

        assert docker_answers()
        assert docker.from_env().containers.get(name).status in ("exited", "running")
    finally:
        if docker_answers():
            subprocess.run(["docker", "rm", "-f", name], check=False, capture_output=True)
        second.stop()
        first.stop()
        assert not dockerd.dockerd_pids()
