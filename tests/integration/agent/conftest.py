"""Fixtures of the agent's tests: this machine's Docker Engine and a busybox image already on it."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import docker
import pytest

from tests.support import build_busybox, unique


@pytest.fixture(scope="module")
def engine() -> Iterator[docker.DockerClient]:
    client = docker.from_env(timeout=60)
    yield client
    client.close()


@pytest.fixture(scope="module")
def image(engine: docker.DockerClient) -> Iterator[str]:
    """A local busybox tag: present, so the agent never pulls it."""
    reference = build_busybox(engine, f"tyagent/{unique('bb')}", "1")
    yield reference
    with contextlib.suppress(docker.errors.APIError):
        engine.images.remove(reference, force=True)
