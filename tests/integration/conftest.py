"""Fixtures for integration tests that need only NATS (not the whole platform)."""

from __future__ import annotations

import subprocess
import tempfile
from collections.abc import Iterator

import pytest

from tingyu.cli.launcher import find_binary, free_port, port_open, wait_until


@pytest.fixture(scope="session")
def nats_url() -> Iterator[str]:
    """A nats-server with JetStream of this session's own, on a free port and in a temp folder."""
    with tempfile.TemporaryDirectory(prefix="tingyu-nats-") as store:
        port = free_port()
        argv = [find_binary("nats-server"), "-js", "-sd", store, "-a", "127.0.0.1", "-p", str(port)]
        server = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_until(lambda: port_open(port), 30, "nats-server")
            yield f"nats://127.0.0.1:{port}"
        finally:
            server.terminate()
            server.wait(timeout=15)
