"""`TINGYU_API_WORKERS`: several API processes answer on one port, each with its own views; a
SIGTERM to the parent stops them all, and a worker that dies takes the API down so that its
supervisor starts it afresh."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator

import httpx
import psutil
import pytest

from tests.support import ADMIN_TOKEN, bearer, eventually
from tingyu.cli.launcher import free_port


@pytest.fixture
def api_process(nats_url: str) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """`python -m tingyu.api.main` with two workers, and its base URL."""
    port = free_port()
    env = os.environ | {
        "TINGYU_NATS_URL": nats_url,
        "TINGYU_API_PORT": str(port),
        "TINGYU_API_WORKERS": "2",
        "TINGYU_API_ADMIN_TOKEN": ADMIN_TOKEN,
    }
    parent = subprocess.Popen([sys.executable, "-m", "tingyu.api.main"], env=env)
    try:
        yield parent, f"http://127.0.0.1:{port}/tingyu"
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()


async def workers_of(parent: subprocess.Popen[bytes]) -> list[psutil.Process]:
    async def two() -> list[psutil.Process] | None:
        children = psutil.Process(parent.pid).children()
        return children if len(children) == 2 else None

    return await eventually(two, timeout=30)


async def exit_code(parent: subprocess.Popen[bytes]) -> int:
    async def ended() -> list[int] | None:
        code = parent.poll()
        return [code] if code is not None else None

    return (await eventually(ended, timeout=30))[0]


def gone(worker: psutil.Process) -> bool:
    return not worker.is_running() or worker.status() == psutil.STATUS_ZOMBIE


async def test_two_workers_share_the_port_and_stop_together(
    api_process: tuple[subprocess.Popen[bytes], str],
) -> None:
    parent, url = api_process
    async with httpx.AsyncClient(base_url=url, headers=bearer()) as api:

        async def ready() -> bool:
            try:
                return (await api.get("/readyz")).status_code == 200
            except httpx.TransportError:
                return False

        await eventually(ready, timeout=30)
    workers = await workers_of(parent)
    for _ in range(10):  # a fresh connection per call: whichever worker accepts it answers
        async with httpx.AsyncClient(base_url=url, headers=bearer()) as one:
            assert (await one.get("/node/list")).json()["code"] == 200

    parent.send_signal(signal.SIGTERM)
    assert await exit_code(parent) == 0
    assert all(gone(worker) for worker in workers)


async def test_a_worker_that_dies_stops_the_api(api_process: tuple[subprocess.Popen[bytes], str]) -> None:
    parent, _ = api_process
    workers = await workers_of(parent)
    workers[0].kill()
    assert await exit_code(parent) != 0
    assert gone(workers[1])
