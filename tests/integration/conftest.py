"""Fixtures for integration tests that need only NATS (not the whole platform)."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import trusted
from tingyu.cli.launcher import Platform, PlatformConfig, free_port


def nats_only(state_dir: Path) -> Platform:
    """A nats-server with JetStream on a free port, its store and log in `state_dir` (launcher code)."""
    config = trusted(
        PlatformConfig(
            state_dir=state_dir, nats_port=free_port(), colour=False, log_file=state_dir / "nats.log"
        )
    )
    platform = Platform(config)
    platform.start_nats()
    return platform


@pytest.fixture(scope="session")
def nats_url() -> Iterator[str]:
    """This session's own nats-server (fast to start; the tests that use it need nothing else)."""
    with tempfile.TemporaryDirectory(prefix="tingyu-nats-") as folder:
        platform = nats_only(Path(folder))
        try:
            yield platform.config.nats_url
        finally:
            platform.stop()
